import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnalysisRun } from '../../server/analysis/analysis-run.ts';
import type { RunAssessment } from '../../server/analysis/analysis-assessment.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { Registry } from 'prom-client';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { promqlAlternation, promqlString } from '../../server/analysis/query-template.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';

it('the candidate-errors template gives a freshly assigned cohort time to report before it measures (no Inconclusive pause at once)', async () => {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ setWeight: 25 }, { analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
  const metrics = (spec.steps[1] as { metrics: readonly AnalysisMetric[] }).metrics;
  const start = Date.UTC(2026, 0, 1);
  const scheduler = new ManualScheduler(start);
  // The cohort's devices install the candidate, then benchmark it and report: the server (or
  // Prometheus, a scrape later) has their candidate counters some 30 s after the step began.
  const provider = new ScriptedProvider([
    (query, context) => {
      const reported = context.now.getTime() >= start + 30_000;
      const value = query.startsWith('sum(fleetprune_device_prediction_errors_total') ? 0 : 400; // 0 errors in 400 predictions
      return { resultType: 'vector', samples: reported ? [{ labels: {}, value }] : [] };
    },
  ]);
  const seen: Measurement[] = [];
  const completed: RunAssessment[] = [];
  const run = new AnalysisRun({
    metrics,
    providers: new MetricProviderResolver({ builtin: provider }),
    scheduler,
    context: { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2'], args: { model: 'wine', candidateVersion: '2', rollout: 'r', cohort: 'd1|d2', cohortSize: '2', step: '1', fleet: '' } },
    onMeasurement: (measurement) => void seen.push(measurement),
    onComplete: (assessment) => void completed.push(assessment),
  });
  run.start();
  for (let elapsed = 0; elapsed <= 10 * 60_000 && completed.length === 0; elapsed += 10_000) await scheduler.advance(10_000);
  assert.deepEqual(seen.map((measurement) => measurement.phase), ['Successful', 'Successful', 'Successful'], seen.map((measurement) => measurement.message).join('; '));
  assert.equal(completed[0]?.phase, 'Successful');
});

describe('the candidate-errors template counts served and shadow-run rows only, not benchmark rows', () => {
  /** One measurement of fleetprune-candidate-errors on the builtin provider over the server's exported series. */
  async function measure(feed: (exporter: ReportMetricsExporter) => void, history?: InMemoryReportHistory): Promise<Measurement> {
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ devices: ['d1', 'd2'] }, { analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
    const metric = (spec.steps[1] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const registry = new Registry();
    const exporter = new ReportMetricsExporter(registry);
    feed(exporter);
    const providers = new MetricProviderResolver({ builtin: new BuiltinProvider({ recorder: new RegistrySeriesRecorder(registry), ...(history ? { history } : {}) }) });
    const devices = ['d1', 'd2'];
    const now = new Date();
    return takeMeasurement(metric, 0, providers, {
      model: 'wine', candidateVersion: '2', devices, now: () => now,
      args: { rollout: 'r', model: 'wine', candidateVersion: '2', cohort: promqlString(promqlAlternation(devices)), cohortSize: '2', step: '1', fleet: '' },
    });
  }
  const benchmark = (exporter: ReportMetricsExporter, deviceId: string) =>
    exporter.observe({ model: 'wine', version: '2', role: 'candidate', cohort: 'pilot', deviceId, accuracy: 0.9, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 60, ts: new Date(Date.now() - 5000) });
  /** shadowRows ran fine, shadowErrors failed (a heartbeat's delta). */
  const shadow = (exporter: ReportMetricsExporter, deviceId: string, shadowRows: number, shadowErrors: number) =>
    exporter.observeServing({ deviceId, cohort: 'pilot', active: null, candidate: { model: 'wine', version: '2' }, predictions: 0, errors: 0, shadowRows, shadowErrors });

  it('two benchmarks of 60 holdout rows and no shadow run are too few samples (Inconclusive), not a pass on 120', async () => {
    const m = await measure((exporter) => ['d1', 'd2'].forEach((device) => benchmark(exporter, device)));
    assert.equal(m.phase, 'Inconclusive', m.message);
    assert.equal(m.samples, 0, 'no served or shadow-run row');
  });

  it('the same from report history alone (series a restarted server no longer exports): benchmarks are no served rows', async () => {
    const history = new InMemoryReportHistory();
    for (const deviceId of ['d1', 'd2']) history.add({ model: 'wine', version: '2', role: 'candidate', cohort: 'pilot', deviceId, accuracy: 0.9, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 60, ts: new Date(Date.now() - 5000) });
    const m = await measure(() => {}, history);
    assert.equal(m.phase, 'Inconclusive', m.message);
    assert.equal(m.samples, 0);
  });

  it('judges the shadow runs alone: 3 failed of 150 shadow rows is a ratio of 0.02 over 150 samples, Failed against 0.01', async () => {
    const m = await measure((exporter) => {
      for (const device of ['d1', 'd2']) benchmark(exporter, device);
      shadow(exporter, 'd1', 97, 3); // 97 run fine, 3 failed: 100 rows
      shadow(exporter, 'd2', 50, 0);
    });
    assert.equal(m.samples, 150, 'the benchmarks\' 120 holdout rows do not count');
    assert.deepEqual(m.value, [0.02]);
    assert.equal(m.phase, 'Failed', m.message);
  });

  it('passes on enough clean shadow rows', async () => {
    const m = await measure((exporter) => {
      for (const device of ['d1', 'd2']) benchmark(exporter, device);
      shadow(exporter, 'd1', 100, 0);
      shadow(exporter, 'd2', 99, 1);
    });
    assert.equal(m.samples, 200);
    assert.deepEqual(m.value, [0.005]);
    assert.equal(m.phase, 'Successful', m.message);
  });
});
