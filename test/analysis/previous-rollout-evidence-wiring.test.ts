import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { Registry } from 'prom-client';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { engineMissing } from '../helpers/engines.ts';
import { PrometheusProcess, prometheusBinary } from '../helpers/prometheus.ts';
import { ScriptedProvider } from './scripted-provider.ts';

/**
 * previous-rollout-evidence.test.ts with the series as the server really has them: the
 * ReportMetricsExporter keeps each label set's last benchmark on /metrics for as long as the label
 * set stays, and Prometheus (or the builtin provider's RegistrySeriesRecorder, as rollout-module.ts
 * wires it, over report history) scrapes that value again and again, time-stamped with each scrape.
 * Cutting the window at the rollout's start is then not enough: rollout A of wine@2 benchmarked
 * d1-d4; rollout B of wine@2 starts 120 s before the measurement, and only d1 has benchmarked
 * since. The devices still holding wine@2 from A (a manual assign, an unacknowledged revert) must
 * not be B's evidence until they benchmark again.
 */
const DEVICES = ['d1', 'd2', 'd3', 'd4'];

function report(deviceId: string, role: 'active' | 'candidate', at: number): DeviceReport {
  return {
    model: 'wine', version: role === 'active' ? '1' : '2', role, cohort: 'pilot', deviceId,
    accuracy: role === 'active' ? 0.9 : 0.92, mse: null, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts: new Date(at),
  };
}

function relativeAccuracy(): AnalysisMetric {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', window: '5m' } }] } }] });
  return (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
}

function measure(providers: MetricProviderResolver, now: Date, notBefore: Date): Promise<Measurement> {
  return takeMeasurement(relativeAccuracy(), 0, providers, { model: 'wine', candidateVersion: '2', devices: DEVICES, baselineVersions: ['1'], args: {}, now: () => now, notBefore });
}

function assertOnlyD1(measurement: Measurement): void {
  assert.equal(measurement.phase, 'Inconclusive', measurement.message);
  assert.match(measurement.message, /too few samples: 1 device with both candidate and baseline accuracy reports \(1 candidate, 1 baseline\)/);
}

function assertNoDevice(measurement: Measurement): void {
  assert.equal(measurement.phase, 'Inconclusive', measurement.message);
  assert.match(measurement.message, /too few samples: 0 devices with both candidate and baseline accuracy reports/);
}

describe('relative checks and an earlier rollout of the same version, on the server\'s exported series', () => {
  it('builtin provider as the server wires it (exporter, recorder, history): reports from before the start are not evidence', async () => {
    const T = Date.UTC(2026, 0, 1, 12);
    const history = new InMemoryReportHistory();
    const registry = new Registry();
    const exporter = new ReportMetricsExporter(registry);
    const recorder = new RegistrySeriesRecorder(registry);
    const add = (...reports: DeviceReport[]) => {
      history.add(...reports);
      for (const r of reports) exporter.observe(r);
    };
    const providers = new MetricProviderResolver({ builtin: new BuiltinProvider({ history, recorder }) });
    // Rollout A's benchmarks, recorded (scraped) while A ran.
    for (const device of DEVICES) add(report(device, 'active', T - 240_000), report(device, 'candidate', T - 240_000));
    await recorder.scrape(new Date(T - 200_000));
    await recorder.scrape(new Date(T - 100_000));
    // Rollout B starts at T - 120 s; only d1 benchmarks it.
    add(report('d1', 'active', T - 30_000), report('d1', 'candidate', T - 30_000));
    const notBefore = new Date(T - 120_000);

    const early = await measure(providers, new Date(T), notBefore);
    assertOnlyD1(early);
    assert.match(early.queries.candidate!, /and last_over_time\(fleetprune_device_report_timestamp_seconds\{model="wine",version="2",role="candidate",device=~"d1\|d2\|d3\|d4"\}\[2m\]\) >= 1767268680\)$/);
    assert.match(early.queries.baseline!, /and last_over_time\(fleetprune_device_report_timestamp_seconds\{model="wine",version="1",role="active",device=~"d1\|d2\|d3\|d4"\}\[2m\]\) >= 1767268680\)$/);

    // Long after the start (the window is the metric's 5m, no longer cut) the old reports still
    // stand on /metrics and are scraped: they still do not count.
    await recorder.scrape(new Date(T + 3_000_000));
    const late = await measure(providers, new Date(T + 3_600_000), notBefore);
    assert.match(late.queries.candidate!, /\[5m\]\) >= 1767268680\)$/);
    assertOnlyD1(late);

    // Once d2-d4 benchmark B, they count: the filter keeps what is this rollout's.
    for (const device of ['d2', 'd3', 'd4']) add(report(device, 'active', T + 3_610_000), report(device, 'candidate', T + 3_610_000));
    const after = await measure(providers, new Date(T + 3_620_000), notBefore);
    assert.equal(after.phase, 'Successful', after.message);
    assert.equal(after.samples, 4, after.message);
  });

  it("devices whose clocks are off: the report time is the server's receipt of the report, so a device behind still counts and one ahead brings no earlier rollout's benchmark in", async () => {
    const T = Date.UTC(2026, 0, 1, 12);
    const notBefore = new Date(T - 120_000);
    // As the server ingests them: ts is the device's clock, receivedAt the server's.
    const measureSkewed = async (skewMs: number, receivedAt: number) => {
      const history = new InMemoryReportHistory();
      const registry = new Registry();
      const exporter = new ReportMetricsExporter(registry);
      const recorder = new RegistrySeriesRecorder(registry);
      for (const device of DEVICES) {
        for (const role of ['active', 'candidate'] as const) {
          history.add(report(device, role, receivedAt)); // the store's history is timed by receipt
          exporter.observe({ ...report(device, role, receivedAt + skewMs), receivedAt: new Date(receivedAt) });
        }
      }
      await recorder.scrape(new Date(T - 20_000));
      return measure(new MetricProviderResolver({ builtin: new BuiltinProvider({ history, recorder }) }), new Date(T), notBefore);
    };
    // Every device benchmarked 30 s ago, within the rollout, with its clock 5 minutes behind.
    const behind = await measureSkewed(-300_000, T - 30_000);
    assert.equal(behind.phase, 'Successful', behind.message);
    assert.match(behind.message, /on 4 devices/);
    // Every device benchmarked only before the start (an earlier rollout), with its clock 10 minutes ahead.
    assertNoDevice(await measureSkewed(600_000, T - 240_000));
  });

  it('history alone (after a restart: nothing recorded yet) gives the same verdicts', async () => {
    const T = Date.UTC(2026, 0, 1, 12);
    const history = new InMemoryReportHistory();
    for (const device of DEVICES) history.add(report(device, 'active', T - 240_000), report(device, 'candidate', T - 240_000));
    history.add(report('d1', 'active', T - 30_000), report('d1', 'candidate', T - 30_000));
    const providers = new MetricProviderResolver({ builtin: new BuiltinProvider({ history, recorder: new RegistrySeriesRecorder(new Registry()) }) });
    assertOnlyD1(await measure(providers, new Date(T), new Date(T - 120_000)));
    for (const device of ['d2', 'd3', 'd4']) history.add(report(device, 'active', T - 10_000), report(device, 'candidate', T - 10_000));
    const all = await measure(providers, new Date(T), new Date(T - 120_000));
    assert.equal(all.phase, 'Successful', all.message);
    assert.equal(all.samples, 4, all.message);
  });

  it('real Prometheus scraping the exporter: reports from before the start are not evidence', async (t: TestContext) => {
    const binary = prometheusBinary();
    if (!binary) {
      engineMissing(t, 'Prometheus', 'no prometheus binary at /usr/bin/prometheus or on PATH (set PROMETHEUS_BIN)');
      return;
    }
    const T = Date.now();
    const registry = new Registry();
    const exporter = new ReportMetricsExporter(registry);
    for (const device of DEVICES) {
      exporter.observe(report(device, 'active', T - 240_000));
      exporter.observe(report(device, 'candidate', T - 240_000));
    }
    exporter.observe(report('d1', 'active', T - 30_000));
    exporter.observe(report('d1', 'candidate', T - 30_000));
    const server = http.createServer(async (_req, res) => {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const prometheus = await PrometheusProcess.startScraping(binary, 'fleetprune', [`127.0.0.1:${(server.address() as net.AddressInfo).port}`]);
    try {
      const provider = new PrometheusProvider({ url: prometheus.url });
      const providers = new MetricProviderResolver({ builtin: new ScriptedProvider(['error'], 'builtin'), prometheus: provider });
      const count = async (query: string) => (await provider.query(query, { now: new Date() })).samples[0]?.value;
      // 10 benchmarks: A's 8, and d1's two for B.
      await prometheus.waitFor('the exported series scraped', async () => (await count('sum(fleetprune_device_reports_total)')) === 10 || 'not yet');
      const notBefore = new Date(T - 120_000);
      assertOnlyD1(await measure(providers, new Date(), notBefore));

      // d2-d4 benchmark this rollout: once scraped, all four count.
      const now = Date.now();
      for (const device of ['d2', 'd3', 'd4']) {
        exporter.observe(report(device, 'active', now));
        exporter.observe(report(device, 'candidate', now));
      }
      await prometheus.waitFor('the new reports scraped', async () => (await count('sum(fleetprune_device_reports_total)')) === 16 || 'not yet');
      const after = await measure(providers, new Date(), notBefore);
      assert.equal(after.provider, 'prometheus');
      assert.equal(after.phase, 'Successful', after.message);
      assert.equal(after.samples, 4, after.message);
    } finally {
      await prometheus.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
