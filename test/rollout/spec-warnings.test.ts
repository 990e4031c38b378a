import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { DEFAULT_ANALYSIS_TEMPLATES } from '../../server/analysis/default-templates.ts';
import { NO_ANALYSIS_WARNING, specWarnings } from '../../server/rollout/spec-warnings.ts';
import { specOf } from './rollout-fixtures.ts';

const query = (successCondition?: string, failureCondition?: string, extra: Record<string, unknown> = {}) => ({
  name: 'm',
  provider: { prometheus: { query: 'up', ...extra } },
  ...(successCondition === undefined ? {} : { successCondition }),
  ...(failureCondition === undefined ? {} : { failureCondition }),
});
const warningsOf = (metric: Record<string, unknown>, args?: unknown[]) => specWarnings(specOf([{ analysis: { metrics: [metric], ...(args ? { args } : {}) } }]));

describe('spec warnings: analysis that decides nothing', () => {
  it('a condition true for every result of 0 or more (a metric that cannot be negative) is a warning, saying so', () => {
    assert.deepEqual(warningsOf(query('result[0] >= 0')), [
      'steps[0].analysis metric "m": successCondition "result[0] >= 0" is true for every result of 0 or more: unless the query can return negative values (counts, rates, durations and ratios cannot), it passes every measurement',
    ]);
    assert.match(warningsOf(query('all(result, {# >= 0})'))[0]!, /is true for every result of 0 or more/);
    assert.match(warningsOf(query('result[0] >= -1'))[0]!, /is true for every result of 0 or more/);
    assert.match(warningsOf(query(undefined, 'result[0] < 0'))[0]!, /failureCondition "result\[0\] < 0" is false for every result of 0 or more: .* it never fails a measurement$/);
  });

  it('a condition constant whatever the result is a warning: always true, always false, for success and failure', () => {
    assert.deepEqual(warningsOf(query('len(result) > 0 || result[0] > 1')), ['steps[0].analysis metric "m": successCondition "len(result) > 0 || result[0] > 1" is true whatever the query returns: it passes every measurement']);
    assert.match(warningsOf(query('result[0] < 1e300'))[0]!, /is true whatever the query returns/);
    assert.match(warningsOf(query('!isNaN(result[0])'))[0]!, /is true whatever the query returns/, 'a NaN result is Inconclusive before any condition runs');
    assert.match(warningsOf(query('result[0] > 1 && false'))[0]!, /successCondition .* is false whatever the query returns: no measurement can pass by it$/);
    assert.match(warningsOf(query('result[0] >= 0.9', 'true'))[0]!, /failureCondition "true" is true whatever the query returns: every measurement fails$/);
    assert.match(warningsOf(query('result[0] <= baseline[0] || true', undefined, { baselineQuery: 'up' }))[0]!, /is true whatever the query returns/);
  });

  it('conditions that can go either way give no warning, whatever the arguments the rollout sets', () => {
    for (const condition of ['result[0] >= 0.95', 'result[0] <= 0.01', 'abs(result[0]) < 2', 'len(result) >= args.cohortSize', 'avg(result) * 100 > 99', 'result[1] > result[0]']) {
      assert.deepEqual(warningsOf(query(condition)), [], condition);
    }
    assert.deepEqual(warningsOf(query('result[0] <= baseline[0] * 1.1', undefined, { baselineQuery: 'up' })), []);
    assert.deepEqual(warningsOf(query('result[0] <= limit'), [{ name: 'limit', value: 5 }]).length, 0);
  });

  it('a relative check whose tolerance lets every candidate pass is a warning; the defaults and built-in templates give none', () => {
    assert.deepEqual(warningsOf({ name: 'acc', relative: { metric: 'accuracy', tolerance: 100 } }), [
      'steps[0].analysis metric "acc": tolerance 100 points: the bound (baseline − 100) is at most 0 points whatever the baseline (0-100), and no accuracy is below 0, so the check can never fail',
    ]);
    assert.match(warningsOf({ name: 'err', relative: { metric: 'error_rate', tolerance: 250 } })[0]!, /bound \(baseline \+ 250\) is at least 100 % .* can never fail$/);
    assert.match(warningsOf({ name: 'acc', relative: { metric: 'accuracy', tolerance: 60 } })[0]!, /accepts a candidate 60 points worse than its baseline .* can hardly fail$/);
    assert.match(warningsOf({ name: 'lat', relative: { metric: 'latency_p95', tolerance: 3 } })[0]!, /relative tolerance 3 accepts a candidate up to 4× its baseline latency_p95, so the check can hardly fail$/);
    assert.match(warningsOf({ name: 'acc', relative: { metric: 'accuracy', toleranceMode: 'relative', tolerance: 0.6 } })[0]!, /down to 0\.4000× its baseline accuracy/);
    for (const relative of [{ metric: 'accuracy' }, { metric: 'accuracy', tolerance: 5 }, { metric: 'mse' }, { metric: 'latency_p95', tolerance: 0.5 }, { metric: 'error_rate', tolerance: 2 }, { metric: 'mse', toleranceMode: 'absolute', tolerance: 1e6 }]) {
      assert.deepEqual(warningsOf({ name: 'r', relative }), [], JSON.stringify(relative));
    }
    const templates = DEFAULT_ANALYSIS_TEMPLATES.map((template) => ({ templateName: template.name }));
    assert.deepEqual(specWarnings(specOf(templates.map((ref) => ({ analysis: { templates: [ref] } })))), []);
  });
});

test('a spec without any analysis step is warned about, once; one analysis step anywhere is enough', () => {
  assert.deepEqual(specWarnings(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }])), [NO_ANALYSIS_WARNING]);
  assert.match(NO_ANALYSIS_WARNING, /^no analysis step: nothing compares the candidate's metrics with the baseline's/);
  const analysis = { analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', tolerance: 1 } }] } };
  assert.deepEqual(specWarnings(specOf([{ setWeight: 10 }, { setWeight: 100 }, analysis])), []);
});
