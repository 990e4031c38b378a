import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { Gauge, Registry } from 'prom-client';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { engineMissing } from '../helpers/engines.ts';
import { PrometheusProcess, prometheusBinary } from '../helpers/prometheus.ts';

/**
 * The builtin provider and a real Prometheus give the same verdict on the same server series,
 * also once series are gone from /metrics: Prometheus writes a staleness marker when a series
 * leaves a scrape (a dropped candidate's, a revoked device's), and queries no longer see it.
 */
const binary = prometheusBinary();

const registry = new Registry();
const exporter = new ReportMetricsExporter(registry);
const recorder = new RegistrySeriesRecorder(registry);
const builtin = new BuiltinProvider({ recorder });
const hits = new Gauge({ name: 'parity_hits', help: 'h', labelNames: ['device'], registers: [registry] });
const rows = new Gauge({ name: 'parity_rows', help: 'h', labelNames: ['device'], registers: [registry] });

function report(deviceId: string, role: 'active' | 'candidate', accuracy: number): DeviceReport {
  return { model: 'wine', version: role === 'active' ? '1' : '2', role, cohort: 'pilot', deviceId, accuracy, mse: null, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts: new Date() };
}

let metricsServer: http.Server | undefined;
let prometheus: PrometheusProcess | undefined;

async function candidateDevices(query: (q: string) => Promise<readonly { labels: Readonly<Record<string, string>> }[]>): Promise<string> {
  return (await query('fleetprune_device_accuracy_ratio{model="wine",version="2",role="candidate"}')).map((s) => s.labels.device).sort().join(',');
}

describe('builtin and prometheus providers agree', () => {
  before(async () => {
    if (!binary) return;
    metricsServer = http.createServer(async (_req, res) => {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
    });
    await new Promise<void>((resolve) => metricsServer!.listen(0, '127.0.0.1', resolve));
    const port = (metricsServer.address() as net.AddressInfo).port;
    prometheus = await PrometheusProcess.startScraping(binary, 'fleetprune', [`127.0.0.1:${port}`]);
  });

  after(async () => {
    await prometheus?.stop();
    await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
  });

  const needsPrometheus = (t: TestContext): boolean => {
    if (binary) return true;
    engineMissing(t, 'Prometheus', 'no prometheus binary at /usr/bin/prometheus or on PATH (set PROMETHEUS_BIN)');
    return false;
  };

  it('min and max skip NaN values (a device with no traffic: 0/0) unless all are NaN, as Prometheus does', async (t) => {
    if (!needsPrometheus(t)) return;
    hits.set({ device: 'busy' }, 1);
    rows.set({ device: 'busy' }, 2);
    hits.set({ device: 'idle' }, 0);
    rows.set({ device: 'idle' }, 0);
    const viaPrometheus = new PrometheusProvider({ url: prometheus!.url });
    await prometheus!.waitFor('the ratios scraped', async () => (await viaPrometheus.query('count(parity_hits / parity_rows)', { now: new Date() })).samples[0]?.value === 2);
    const queries = ['min(parity_hits / parity_rows)', 'max(parity_hits / parity_rows)', 'min(parity_hits{device="idle"} / parity_rows)', 'min(min_over_time(parity_hits[1m]) / parity_rows)'];
    for (const query of queries) {
      const now = new Date();
      const [fromPrometheus, fromBuiltin] = await Promise.all([viaPrometheus.query(query, { now }), builtin.query(query, { now })]);
      assert.deepEqual(fromBuiltin.samples.map((s) => s.value), fromPrometheus.samples.map((s) => s.value), query);
    }
    assert.deepEqual((await builtin.query('min(parity_hits / parity_rows)', { now: new Date() })).samples.map((s) => s.value), [0.5]);
  });

  it('on series gone from /metrics: a dropped candidate\'s and a revoked device\'s no longer count on either', async (t) => {
    if (!needsPrometheus(t)) return;
    const viaPrometheus = new PrometheusProvider({ url: prometheus!.url });
    const onPrometheus = async (q: string) => (await viaPrometheus.query(q, { now: new Date() })).samples;
    const onBuiltin = async (q: string) => (await builtin.query(q, { now: new Date() })).samples;

    // An earlier pilot of version 2 that went badly on d1 and d2.
    for (const device of ['d1', 'd2']) {
      exporter.observe(report(device, 'active', 0.9));
      exporter.observe(report(device, 'candidate', 0.4));
    }
    await prometheus!.waitFor('the first pilot scraped', async () => (await candidateDevices(onPrometheus)) === 'd1,d2' || await candidateDevices(onPrometheus));
    assert.equal(await candidateDevices(onBuiltin), 'd1,d2');

    // d1 dropped the candidate (rolled back), d2 was revoked; d3 and d4 run it well.
    exporter.keepSlots('d1', { active: { model: 'wine', version: '1' }, candidate: null });
    exporter.forgetDevice('d2');
    for (const device of ['d3', 'd4']) {
      exporter.observe(report(device, 'active', 0.9));
      exporter.observe(report(device, 'candidate', 0.95));
    }
    await prometheus!.waitFor('the change scraped', async () => (await candidateDevices(onPrometheus)) === 'd3,d4' || await candidateDevices(onPrometheus));
    assert.equal(await candidateDevices(onBuiltin), 'd3,d4', 'the builtin provider still sees series the server no longer exports');

    // The same metric, measured on each provider: the same verdict and values.
    const spec = validateRolloutSpec({
      model: 'wine',
      candidateVersion: '2',
      steps: [{ analysis: { metrics: [{ name: 'worst-candidate', provider: { prometheus: { query: 'min(fleetprune_device_accuracy_ratio{model="{{args.model}}",version="{{args.candidateVersion}}",role="candidate"})', samplesQuery: 'count(fleetprune_device_accuracy_ratio{model="{{args.model}}",version="{{args.candidateVersion}}",role="candidate"})' } }, successCondition: 'result[0] >= 0.9' }] } }],
    });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const context = { model: 'wine', candidateVersion: '2', devices: ['d3', 'd4'], args: { model: 'wine', candidateVersion: '2' }, now: () => new Date() };
    const measured = {
      prometheus: await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin, prometheus: viaPrometheus }), context),
      builtin: await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin }), context),
    };
    assert.equal(measured.prometheus.provider, 'prometheus');
    assert.equal(measured.builtin.provider, 'builtin');
    for (const [name, measurement] of Object.entries(measured)) {
      assert.equal(measurement.phase, 'Successful', `${name}: ${measurement.message}`);
      assert.deepEqual(measurement.value, [0.95], name);
      assert.equal(measurement.samples, 2, name);
    }

    // The relative check (a range over the window) keeps what was scraped before, on both.
    const relative = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', window: '5m' }, minSamples: 2 }] } }] });
    const check = (relative.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const devices = { ...context, devices: ['d1', 'd3', 'd4'] };
    const prometheusCheck = await takeMeasurement(check, 0, new MetricProviderResolver({ builtin, prometheus: viaPrometheus }), devices);
    const builtinCheck = await takeMeasurement(check, 0, new MetricProviderResolver({ builtin }), devices);
    assert.deepEqual(prometheusCheck.relative?.candidate.map((entry) => entry.device), ['d1', 'd3', 'd4']);
    assert.deepEqual(builtinCheck.relative?.candidate.map((entry) => entry.device), ['d1', 'd3', 'd4']);
    assert.equal(builtinCheck.phase, prometheusCheck.phase);
  });
});
