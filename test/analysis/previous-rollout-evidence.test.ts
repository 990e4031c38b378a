import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';

/**
 * A relative check measures this rollout, not an earlier one of the same candidate version:
 * rollout A of wine@2 benchmarked on d1-d4 and was aborted; rollout B of wine@2 starts two
 * minutes later and only d1 has benchmarked it yet. A 5m window would reach back into A's
 * reports and count four devices (Successful: promoted on evidence B never produced).
 */
const T = Date.UTC(2026, 0, 1, 12);
const report = (deviceId: string, role: 'active' | 'candidate', seconds: number): DeviceReport => ({
  model: 'wine', version: role === 'active' ? '1' : '2', role, cohort: 'pilot', deviceId,
  accuracy: role === 'active' ? 0.9 : 0.92, mse: null, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts: new Date(T + seconds * 1000),
});

describe('relative checks and an earlier rollout of the same version', () => {
  it('look no further back than the rollout\'s start: an earlier rollout\'s reports are not evidence', async () => {
    const history = new InMemoryReportHistory();
    for (const device of ['d1', 'd2', 'd3', 'd4']) history.add(report(device, 'active', -240), report(device, 'candidate', -240)); // rollout A
    history.add(report('d1', 'active', -30), report('d1', 'candidate', -30)); // rollout B, started at -120 s
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', window: '5m' } }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const providers = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }) });
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4'], baselineVersions: ['1'], args: {}, now: () => new Date(T) };

    const measurement = await takeMeasurement(metric, 0, providers, { ...context, notBefore: new Date(T - 120_000) });
    assert.equal(measurement.phase, 'Inconclusive', measurement.message);
    assert.match(measurement.message, /too few samples: 1 device with both/);
    assert.match(measurement.queries.candidate!, /\[2m\]\) >= 1767268680\)$/, 'the window cut at the start, and only reports from the start on');

    // Without a start the window is the metric's, and every report in it counts; long after the
    // start the window is the metric's too, and the reports still have to be from the start on
    // (the exported gauges keep an earlier rollout's report: previous-rollout-evidence-wiring.test.ts).
    const unbounded = await takeMeasurement(metric, 0, providers, context);
    assert.match(unbounded.queries.candidate!, /\[5m\]\)\)$/);
    assert.doesNotMatch(unbounded.queries.candidate!, /report_timestamp/);
    const later = await takeMeasurement(metric, 0, providers, { ...context, notBefore: new Date(T - 3_600_000) });
    assert.match(later.queries.candidate!, /\[5m\]\) >= 1767265200\)$/);
  });
});
