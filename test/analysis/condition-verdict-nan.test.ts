import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { judgeConditions } from '../../server/analysis/condition-verdict.ts';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';

/** One query metric of a spec, as the analysis runs it. */
function metric(fields: Record<string, unknown>, provider: Record<string, string> = { query: 'sum by (device) (rate(e[5m])) / sum by (device) (rate(p[5m]))' }): AnalysisMetric {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'errors', provider: { prometheus: provider }, ...fields }] } }] });
  return (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
}
const judge = (m: AnalysisMetric, values: number[], baseline?: number[]) => judgeConditions(m, { values, ...(baseline ? { baseline } : {}), samples: values.length, args: {} });

describe('query metrics: a NaN value (an idle device\'s 0/0) does not hide a definite failure', () => {
  const anyOver = metric({ failureCondition: 'any(result, {# > 0.05})' });

  it('fails when the failure condition holds over the values that are not NaN (review: nan-masks-failure.ts)', () => {
    const verdict = judge(anyOver, [0.5, 0.01, Number.NaN]);
    assert.equal(verdict.phase, 'Failed', verdict.message);
    assert.match(verdict.message, /failureCondition "any\(result, \{# > 0\.05\}\)" is true over the values that are not NaN \(1 NaN left out\)$/);
    assert.equal(judge(anyOver, [Number.NaN, 0.5, 0.01]).phase, 'Failed', 'wherever the NaN is');
    // With a success condition too: the failure is found before the NaN makes it Inconclusive.
    const both = metric({ successCondition: 'all(result, {# <= 0.05})', failureCondition: 'any(result, {# > 0.05})' });
    assert.equal(judge(both, [0.5, Number.NaN, 0.01]).phase, 'Failed');
  });

  it('is still Inconclusive, never Successful, when the rest does not fail', () => {
    const verdict = judge(anyOver, [0.01, 0.02, Number.NaN]);
    assert.equal(verdict.phase, 'Inconclusive', verdict.message);
    assert.match(verdict.message, /has NaN$/);
    assert.equal(judge(anyOver, [Number.NaN, Number.NaN]).phase, 'Inconclusive', 'nothing but NaN');
    // A condition that a NaN itself would make true (NaN <= 0.05 is false) does not fail on the NaN.
    const notAll = metric({ failureCondition: '!all(result, {# <= 0.05})' });
    assert.equal(judge(notAll, [0.01, Number.NaN]).phase, 'Inconclusive');
    assert.equal(judge(notAll, [0.5, Number.NaN]).phase, 'Failed');
  });

  it('does not judge positions or counts without the NaN (they would move), nor on fewer samples than minSamples', () => {
    const second = metric({ failureCondition: 'result[1] > 0.05' });
    assert.equal(judge(second, [0.01, Number.NaN, 0.5]).phase, 'Inconclusive', 'result[1] is the NaN, not 0.5');
    const count = metric({ failureCondition: 'len(result) < 3' });
    assert.equal(judge(count, [0.01, 0.02, Number.NaN]).phase, 'Inconclusive');
    const three = metric({ failureCondition: 'any(result, {# > 0.05})', minSamples: 3 });
    assert.equal(judge(three, [0.5, 0.01, Number.NaN]).phase, 'Inconclusive', '2 values that are not NaN < minSamples 3');
    assert.equal(judge(three, [0.5, 0.01, 0.02, Number.NaN]).phase, 'Failed');
  });

  it('leaves out a NaN baseline with its result value when they pair up', () => {
    const relative = metric({ failureCondition: 'max(result) > 2 * max(baseline)' }, { query: 'q', baselineQuery: 'b' });
    assert.equal(judge(relative, [0.5, 0.01], [0.1, Number.NaN]).phase, 'Failed');
    const verdict = judge(relative, [0.5, 0.01], [Number.NaN, 0.1]);
    assert.equal(verdict.phase, 'Inconclusive', `0.5 pairs with the NaN baseline: ${verdict.message}`);
  });
});
