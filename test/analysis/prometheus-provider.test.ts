import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { preflightQueries } from '../../server/analysis/query-preflight.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { MetricProviderError } from '../../server/metricproviders/metric-provider.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { engineMissing, freePort } from '../helpers/engines.ts';
import { misbehavingServer, vectorAnswer } from '../helpers/misbehaving-http.ts';
import { PrometheusProcess, prometheusBinary } from '../helpers/prometheus.ts';

/**
 * The prometheus provider against a real Prometheus: the test serves a prom-client registry
 * (with the per-device report series) on an ephemeral port, starts /usr/bin/prometheus with a
 * temporary config scraping it every second (test/helpers/prometheus.ts), waits until the target
 * is up and the series are there, and queries it.
 */
const binary = prometheusBinary();


const history = new InMemoryReportHistory();
const registry = new Registry();
const exporter = new ReportMetricsExporter(registry);
const reportTime = Date.now();
const reports: DeviceReport[] = [];
for (const [i, device] of ['d1', 'd2', 'd3', 'd4'].entries()) {
  for (const role of ['active', 'candidate'] as const) {
    reports.push({
      model: 'wine', version: role === 'active' ? '1' : '2', role, cohort: 'pilot', deviceId: device,
      accuracy: role === 'active' ? 0.95 + i * 0.005 : 0.6 + i * 0.01,
      latencyMs: { p50: 1, p95: 2 + i, p99: 4 }, errors: 0, predictions: 100, ts: new Date(reportTime),
    });
  }
}
for (const report of reports) {
  history.add(report);
  exporter.observe(report);
}
// Then each device runs 100 rows on its candidate in shadow, i of them failing (a heartbeat's delta).
for (const [i, deviceId] of ['d1', 'd2', 'd3', 'd4'].entries()) {
  exporter.observeServing({ deviceId, cohort: 'pilot', active: null, candidate: { model: 'wine', version: '2' }, predictions: 0, errors: 0, shadowRows: 100 - i, shadowErrors: i });
}

let metricsServer: http.Server | undefined;
let prometheus: PrometheusProcess | undefined;
let url = '';

async function waitUntilReady(provider: PrometheusProvider, deadlineMs: number): Promise<void> {
  await prometheus!.waitFor('the test target scraped', async () => {
    const up = await provider.query('up{job="fleetprune"}', { now: new Date(), timeoutMs: 1000 });
    const series = await provider.query('count(fleetprune_device_accuracy_ratio)', { now: new Date(), timeoutMs: 1000 });
    return (up.samples[0]?.value === 1 && series.samples[0]?.value === 8) || `up=${up.samples[0]?.value}, series=${series.samples[0]?.value}`;
  }, deadlineMs);
}

describe('prometheus provider against a real Prometheus', () => {
  before(async () => {
    if (!binary) return;
    metricsServer = http.createServer(async (_req, res) => {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
    });
    await new Promise<void>((resolve) => metricsServer!.listen(0, '127.0.0.1', resolve));
    const targetPort = (metricsServer.address() as net.AddressInfo).port;
    prometheus = await PrometheusProcess.startScraping(binary, 'fleetprune', [`127.0.0.1:${targetPort}`]);
    url = prometheus.url;
    await waitUntilReady(new PrometheusProvider({ url }), 30_000);
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

  it('returns instant vectors with labels, and scalars', async (t) => {
    if (!needsPrometheus(t)) return;
    const provider = new PrometheusProvider({ url });
    const vector = await provider.query('fleetprune_device_accuracy_ratio{role="candidate",device="d2"}', { now: new Date() });
    assert.equal(vector.resultType, 'vector');
    assert.equal(vector.samples.length, 1);
    assert.equal(vector.samples[0]!.labels.model, 'wine');
    assert.equal(vector.samples[0]!.labels.version, '2');
    assert.equal(vector.samples[0]!.labels.job, 'fleetprune');
    assert.ok(Math.abs(vector.samples[0]!.value - 0.61) < 1e-12);
    const byDevice = await provider.query('sum by (device) (fleetprune_device_prediction_errors_total{role="candidate"})', { now: new Date() });
    assert.deepEqual(Object.fromEntries(byDevice.samples.map((s) => [s.labels.device, s.value])), { d1: 0, d2: 1, d3: 2, d4: 3 });
    const scalar = await provider.query('scalar(sum(fleetprune_device_predictions_total))', { now: new Date() });
    assert.deepEqual(scalar, { resultType: 'scalar', samples: [{ labels: {}, value: 1200 }] }, '8 benchmarks of 100 rows, and 400 shadow rows');
    const served = await provider.query('scalar(sum(fleetprune_device_served_predictions_total))', { now: new Date() });
    assert.deepEqual(served, { resultType: 'scalar', samples: [{ labels: {}, value: 400 }] }, 'the shadow rows alone');
    const nan = await provider.query('0/0', { now: new Date() });
    assert.ok(Number.isNaN(nan.samples[0]!.value));
    const empty = await provider.query('fleetprune_device_accuracy_ratio{device="nobody"}', { now: new Date() });
    assert.deepEqual(empty.samples, []);
  });

  it('gives the same relative-check verdict and values as the builtin provider', async (t) => {
    if (!needsPrometheus(t)) return;
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4'], args: {}, now: () => new Date() };
    const viaPrometheus = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new BuiltinProvider({ history }), prometheus: new PrometheusProvider({ url }) }), context);
    const viaBuiltin = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new BuiltinProvider({ history }) }), { ...context, now: () => new Date(reportTime + 1000) });
    assert.equal(viaPrometheus.provider, 'prometheus');
    assert.equal(viaPrometheus.phase, 'Failed');
    assert.equal(viaBuiltin.phase, 'Failed');
    assert.deepEqual(viaPrometheus.value!.map((v) => v.toFixed(6)), viaBuiltin.value!.map((v) => v.toFixed(6)));
    assert.deepEqual(viaPrometheus.baseline!.map((v) => v.toFixed(6)), viaBuiltin.baseline!.map((v) => v.toFixed(6)));
  });

  it('measures the candidate-errors template over one heartbeat per device, on Prometheus and builtin alike', async (t) => {
    if (!needsPrometheus(t)) return;
    // Each device ran 100 shadow rows of its candidate once (errors 0..3), after one benchmark of
    // 100 holdout rows: the counter series never grow, so the template must use totals, not
    // rate(); and the benchmarks' rows are no shadow rows (6 errors in 400, not in 800).
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    // The rollout controller passes the model, the candidate version and the cohort as args.
    const args = { model: 'wine', candidateVersion: '2', cohort: 'd1|d2|d3|d4', fleet: '' };
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4'], args, now: () => new Date() };
    const viaPrometheus = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new BuiltinProvider({ history }), prometheus: new PrometheusProvider({ url }) }), context);
    // The builtin provider reads the server's own series (what heartbeats added) and report history, as the server wires it.
    const builtin = new BuiltinProvider({ recorder: new RegistrySeriesRecorder(registry), history });
    const viaBuiltin = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin }), { ...context, now: () => new Date(reportTime + 1000) });
    assert.equal(viaPrometheus.provider, 'prometheus');
    for (const [name, measurement] of [['prometheus', viaPrometheus], ['builtin', viaBuiltin]] as const) {
      assert.equal(measurement.samples, 400, `${name}: the shadow rows`);
      assert.equal(measurement.phase, 'Failed', `${name}: 6 errors in 400 predictions is above the 1% ceiling (${measurement.message ?? ''})`);
      assert.ok(Math.abs(measurement.value![0]! - 0.015) < 1e-12, `${name}: value ${measurement.value}`);
    }
  });

  it('turns Prometheus errors into MetricProviderError', async (t) => {
    if (!needsPrometheus(t)) return;
    const provider = new PrometheusProvider({ url });
    await assert.rejects(provider.query('sum(', { now: new Date() }), (error: unknown) => error instanceof MetricProviderError && /^prometheus: bad_data: .*parse error/.test(error.message));
    await assert.rejects(provider.query('sum(', { now: new Date() }), (error: unknown) => error instanceof MetricProviderError && !error.queryFault);
    await assert.rejects(
      provider.query('fleetprune_device_accuracy_ratio[1m]', { now: new Date() }),
      (error: unknown) => error instanceof MetricProviderError && error.queryFault && /returns a range vector; wrap it in a function/.test(error.message),
    );
    await assert.rejects(
      provider.query('"abc"', { now: new Date() }),
      (error: unknown) => error instanceof MetricProviderError && error.queryFault && /^prometheus: the query returns a string; a condition reads numbers/.test(error.message),
    );
  });

  it('refuses at a rollout start a query Prometheus answers with a range vector or a string (every measurement would fail); a vector query passes', async (t) => {
    if (!needsPrometheus(t)) return;
    const metric = (name: string, query: string) => ({ name, successCondition: 'result[0] > 0.5', provider: { prometheus: { query } } });
    const spec = validateRolloutSpec({
      model: 'wine',
      candidateVersion: '2',
      steps: [{ setWeight: 50 }, { analysis: { metrics: [metric('range', 'fleetprune_device_accuracy_ratio{model="{{args.model}}"}[5m]'), metric('text', '"abc"'), metric('good', 'avg(fleetprune_device_accuracy_ratio{model="{{args.model}}"})')] } }],
    });
    const resolver = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }), prometheus: new PrometheusProvider({ url }) });
    const checked = await preflightQueries(spec, resolver, { prometheusConfigured: true });
    assert.deepEqual(checked, {
      problems: [
        'steps[1].analysis metric "range": query: the query returns a range vector; wrap it in a function such as rate() or avg_over_time()',
        'steps[1].analysis metric "text": query: the query returns a string; a condition reads numbers (a vector or a scalar)',
      ],
      warnings: [],
    });
  });

  it('turns unreachable and hanging servers into errors within the timeout', async () => {
    const closedPort = await freePort();
    await assert.rejects(new PrometheusProvider({ url: `http://127.0.0.1:${closedPort}` }).query('up', { now: new Date() }), /prometheus: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    // A port fetch itself refuses read "bad port", which said nothing about why.
    await assert.rejects(
      new PrometheusProvider({ url: 'http://127.0.0.1:6000' }).query('up', { now: new Date() }),
      /^MetricProviderError: prometheus: cannot reach http:\/\/127\.0\.0\.1:6000: Node's fetch refuses to connect to port 6000 \(one of the ports the fetch standard blocks\): serve Prometheus on another port$/,
    );
    const sockets: net.Socket[] = [];
    const hanging = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const port = (hanging.address() as net.AddressInfo).port;
    const started = Date.now();
    try {
      await assert.rejects(new PrometheusProvider({ url: `http://127.0.0.1:${port}`, timeoutMs: 300 }).query('up', { now: new Date() }), /prometheus: query timed out after 300 ms/);
      assert.ok(Date.now() - started < 3000);
    } finally {
      for (const socket of sockets) socket.destroy();
      hanging.close();
    }
    assert.throws(() => new PrometheusProvider({ url: 'not a url' }), /--prometheus-url: "not a url" is not a URL/);
  });
});

describe('prometheus provider against a misbehaving backend (a real HTTP server)', () => {
  const query = (url: string, timeoutMs = 2000) => new PrometheusProvider({ url, timeoutMs }).query('up', { now: new Date() });
  const providerError = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof MetricProviderError, `a MetricProviderError, not ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  };

  it('rejects sample values that are not Go floats instead of reading them as 0 or 16', async () => {
    for (const [raw, shown] of [['', '""'], ['  ', '"  "'], ['0x10', '"0x10"'], ['1,5', '"1,5"'], ['Infinity', '"Infinity"']]) {
      const server = await misbehavingServer((_req, res) => res.end(vectorAnswer(raw!)));
      try {
        await assert.rejects(query(server.url), providerError(new RegExp(`^prometheus: malformed sample value ${shown!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a number$`)));
      } finally {
        await server.close();
      }
    }
    // What Prometheus really sends still parses.
    for (const [raw, expected] of [['0.015', 0.015], ['1e-05', 1e-5], ['-3', -3], ['NaN', Number.NaN], ['+Inf', Infinity], ['-Inf', -Infinity]] as const) {
      const server = await misbehavingServer((_req, res) => res.end(vectorAnswer(raw)));
      try {
        assert.deepEqual((await query(server.url)).samples.map((s) => s.value), [expected]);
      } finally {
        await server.close();
      }
    }
  });

  it('an error answer with control characters (a NUL, newlines) becomes one printable line', async () => {
    const server = await misbehavingServer((_req, res) => res.end(JSON.stringify({ status: 'error', errorType: 'bad\u0000data', error: 'parse error:\nunexpected \u0000 at\r\n1' })));
    try {
      await assert.rejects(query(server.url), providerError(/^prometheus: bad data: parse error: unexpected at 1$/));
    } finally {
      await server.close();
    }
  });

  it('an empty value from the backend is an Error measurement, never a passing 0', async () => {
    const server = await misbehavingServer((_req, res) => res.end(vectorAnswer('')));
    try {
      const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'errors', provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] <= 0.01' }] } }] });
      const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
      const providers = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }), prometheus: new PrometheusProvider({ url: server.url }) });
      const measurement = await takeMeasurement(metric, 0, providers, { model: 'wine', candidateVersion: '2', devices: ['d1'], args: {}, now: () => new Date() });
      assert.equal(measurement.phase, 'Error');
      assert.equal(measurement.value, null);
      assert.match(measurement.message, /^errors: prometheus: malformed sample value "": not a number$/);
    } finally {
      await server.close();
    }
  });

  it('turns error statuses, malformed answers, redirects, oversized and endless bodies into clear MetricProviderErrors', async (t) => {
    const cases: [string, (req: http.IncomingMessage, res: http.ServerResponse) => void, RegExp, number?][] = [
      ['HTML with 200', (_req, res) => res.end('<html><body>Bad gateway</body></html>'), /^prometheus: HTTP 200 with a body that is not JSON: <html>/],
      ['500 text', (_req, res) => { res.statusCode = 500; res.end('oops'); }, /^prometheus: HTTP 500 with a body that is not JSON: oops$/],
      ['503 Prometheus error', (_req, res) => { res.statusCode = 503; res.end(JSON.stringify({ status: 'error', errorType: 'unavailable', error: 'too many queries' })); }, /^prometheus: unavailable: too many queries$/],
      ['502 claiming success', (_req, res) => { res.statusCode = 502; res.end(vectorAnswer('0')); }, /^prometheus: HTTP 502 \(Bad Gateway\) despite status "success"$/],
      ['JSON null', (_req, res) => res.end('null'), /^prometheus: HTTP 200 with JSON that is not a Prometheus API answer: null$/],
      ['JSON without status', (_req, res) => res.end('{"data":{}}'), /^prometheus: HTTP 200: not a Prometheus API answer \(no status\)$/],
      ['null vector entry', (_req, res) => res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [null] } })), /^prometheus: malformed vector result: entry 0 is not an object$/],
      ['non-string label', (_req, res) => res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: { device: 5 }, value: [1, '1'] }] } })), /^prometheus: malformed vector result: label "device" of entry 0 is not a string$/],
      ['string result', (_req, res) => res.end(JSON.stringify({ status: 'success', data: { resultType: 'string', result: [1, 'x'] } })), /^prometheus: the query returns a string; a condition reads numbers \(a vector or a scalar\)$/],
      ['unknown result type', (_req, res) => res.end(JSON.stringify({ status: 'success', data: { resultType: 'histogram', result: [] } })), /^prometheus: unsupported result type "histogram"$/],
      ['302 redirect', (_req, res) => { res.statusCode = 302; res.setHeader('location', '/elsewhere/api/v1/query'); res.end(); }, /^prometheus: HTTP 302 redirect to \/elsewhere\/api\/v1\/query; set --prometheus-url/],
      ['oversized body', (_req, res) => {
        res.write('{"status":"success","pad":"');
        const chunk = 'x'.repeat(1024 * 1024);
        let sent = 0;
        const more = () => { while (sent < 20 && res.write(chunk)) sent += 1; if (sent < 20) { sent += 1; res.once('drain', more); } else res.end('"}'); };
        more();
        // 16 MiB must arrive before the timeout for the cap to be what stops it: a loaded machine needs longer than 500 ms.
      }, /^prometheus: HTTP 200 with an answer larger than 16 MiB$/, 10_000],
      ['endless body', (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.write('{"status":"succ'); const timer = setInterval(() => res.write(' '), 50); res.on('close', () => clearInterval(timer)); }, /^prometheus: query timed out after 500 ms \(http:\/\/127\.0\.0\.1:\d+\) while reading the answer$/],
    ];
    for (const [name, handler, pattern, timeoutMs = 500] of cases) {
      await t.test(name, async () => {
        const server = await misbehavingServer(handler);
        const started = Date.now();
        try {
          await assert.rejects(query(server.url, timeoutMs), providerError(pattern));
          assert.ok(Date.now() - started < timeoutMs + 2500, `${name} took ${Date.now() - started} ms`);
        } finally {
          await server.close();
        }
      });
    }
  });
});
