import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { trimMeasurementEvidence } from '../../server/analysis/trim-evidence.ts';
import { medianOf } from '../../server/dashboard/ui/rollouts-view.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider } from './scripted-provider.ts';

describe('trimmed evidence keeps what the dashboard charts', () => {
  it('a failed relative check stays below its bound on the chart after trimming (review: trimmed-chart.ts)', async () => {
    // Six devices near 60 points, four near 99: the mean (75.9) is far from the median (60.5).
    const baseline = [0.6, 0.6, 0.6, 0.6, 0.6, 0.61, 0.99, 0.99, 0.99, 0.99];
    const devices = baseline.map((_, i) => `d${i}`);
    const provider = new ScriptedProvider([(query) => ({ resultType: 'vector', samples: devices.map((device, i) => ({ labels: { device }, value: query.includes('role="candidate"') ? baseline[i]! - 0.05 : baseline[i]! })) })], 'builtin');
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const measured = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: provider }), { model: 'wine', candidateVersion: '2', devices, args: {}, now: () => new Date() });
    assert.equal(measured.phase, 'Failed', measured.message);
    const bound = measured.thresholds.success!;
    assert.ok(medianOf(measured.value)! < bound, `before trimming: candidate ${medianOf(measured.value)} below the bound ${bound}`);

    const trimmed = trimMeasurementEvidence(measured, new Date());
    assert.equal(trimmed.value!.length, 1, 'one value left');
    assert.ok(medianOf(trimmed.value)! < bound, `after trimming: candidate ${medianOf(trimmed.value)} still below the bound ${bound}`);
    assert.equal(medianOf(trimmed.value), medianOf(measured.value), 'the chart plots the same candidate value as before trimming');
    assert.equal(medianOf(trimmed.baseline!), medianOf(measured.baseline!), 'and the same baseline value');
    assert.equal(trimmed.value![0], trimmed.relative!.candidateMedian);
    assert.deepEqual([trimmed.relative!.candidate, trimmed.relative!.baseline], [[], []]);
  });

  it('a query metric\'s vector becomes its median, and an empty or failed one stays as it was', () => {
    const base = { metric: 'errors', index: 0, phase: 'Successful', startedAt: '', finishedAt: '', provider: 'builtin', queries: { query: 'q' }, thresholds: { minSamples: 1 }, message: '' } as const;
    assert.deepEqual(trimMeasurementEvidence({ ...base, value: [0.1, 0.2, 0.9, 1] }, new Date(0)).value, [0.55]);
    assert.deepEqual(trimMeasurementEvidence({ ...base, value: [0.3, 0.1, 5] }, new Date(0)).value, [0.3]);
    assert.deepEqual(trimMeasurementEvidence({ ...base, value: [] }, new Date(0)).value, []);
    assert.equal(trimMeasurementEvidence({ ...base, value: null }, new Date(0)).value, null);
  });
});
