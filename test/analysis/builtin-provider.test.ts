import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { parsePromql, PromqlError } from '../../server/metricproviders/builtin/promql-parser.ts';
import { compileAnchored, RegexPatternError } from '../../server/metricproviders/builtin/linear-regex.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { MetricProviderError, type QueryResult } from '../../server/metricproviders/metric-provider.ts';
import type { DeviceReport, ReportHistory } from '../../server/metricproviders/report-history.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';

const T0 = Date.UTC(2026, 0, 1, 12);
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const byLabel = (result: QueryResult, label: string) => Object.fromEntries(result.samples.map((s) => [s.labels[label] ?? '', s.value]));
const close = (actual: number | undefined, expected: number, tolerance = 1e-9) => assert.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance, `${actual} ≉ ${expected}`);

function registryFixture() {
  const registry = new Registry();
  const requests = new Counter({ name: 'app_requests_total', help: 'h', labelNames: ['code', 'route'], registers: [registry] });
  const temperature = new Gauge({ name: 'app_temperature_celsius', help: 'h', labelNames: ['room'], registers: [registry] });
  const latency = new Histogram({ name: 'app_latency_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 0.5, 1], registers: [registry] });
  const recorder = new RegistrySeriesRecorder(registry);
  return { registry, requests, temperature, latency, recorder, provider: new BuiltinProvider({ recorder }) };
}

describe('builtin provider over a prom-client Registry', () => {
  it('selects series with label matchers and aggregates with sum/avg/min/max/count by and without', async () => {
    const f = registryFixture();
    f.requests.inc({ code: '200', route: '/a' }, 90);
    f.requests.inc({ code: '500', route: '/a' }, 10);
    f.requests.inc({ code: '200', route: '/b' }, 50);
    f.temperature.set({ room: 'lab' }, 21);
    f.temperature.set({ room: 'hall' }, 17);
    const q = (query: string) => f.provider.query(query, { now: at(0) });

    assert.deepEqual((await q('app_requests_total{code="500"}')).samples, [{ labels: { __name__: 'app_requests_total', code: '500', route: '/a' }, value: 10 }]);
    assert.equal((await q('app_requests_total{code!="500"}')).samples.length, 2);
    assert.equal((await q('app_requests_total{route=~"/(a|c)"}')).samples.length, 2);
    assert.equal((await q('app_requests_total{route!~"/a"}')).samples.length, 1);
    assert.deepEqual(byLabel(await q('sum by (route) (app_requests_total)'), 'route'), { '/a': 100, '/b': 50 });
    assert.deepEqual(byLabel(await q('sum(app_requests_total) by (code)'), 'code'), { '200': 140, '500': 10 });
    assert.deepEqual((await q('sum(app_requests_total)')).samples, [{ labels: {}, value: 150 }]);
    assert.deepEqual(byLabel(await q('count without (code) (app_requests_total)'), 'route'), { '/a': 2, '/b': 1 });
    assert.equal((await q('avg(app_temperature_celsius)')).samples[0]!.value, 19);
    assert.equal((await q('min(app_temperature_celsius)')).samples[0]!.value, 17);
    assert.equal((await q('max(app_temperature_celsius)')).samples[0]!.value, 21);
  });

  it('evaluates binary operations with scalars, ratios of two sums, comparisons and bool', async () => {
    const f = registryFixture();
    f.requests.inc({ code: '200', route: '/a' }, 90);
    f.requests.inc({ code: '500', route: '/a' }, 10);
    f.temperature.set({ room: 'lab' }, 21);
    f.temperature.set({ room: 'hall' }, 17);
    const q = (query: string) => f.provider.query(query, { now: at(0) });
    assert.deepEqual(await q('sum(app_requests_total{code="500"}) / sum(app_requests_total)'), { resultType: 'vector', samples: [{ labels: {}, value: 0.1 }] });
    assert.deepEqual(await q('2 * 3 + 1'), { resultType: 'scalar', samples: [{ labels: {}, value: 7 }] });
    assert.deepEqual(byLabel(await q('app_temperature_celsius * 2 + 1 - 3 / 3'), 'room'), { lab: 42, hall: 34 });
    assert.deepEqual(byLabel(await q('app_temperature_celsius > 20'), 'room'), { lab: 21 });
    assert.deepEqual(byLabel(await q('app_temperature_celsius > bool 20'), 'room'), { lab: 1, hall: 0 });
    assert.deepEqual(byLabel(await q('-app_temperature_celsius'), 'room'), { lab: -21, hall: -17 });
    assert.deepEqual(byLabel(await q('sum by (route) (app_requests_total{code="500"}) / on (route) sum by (route) (app_requests_total)'), 'route'), { '/a': 0.1 });
    assert.deepEqual((await q('scalar(sum(app_requests_total))')).samples, [{ labels: {}, value: 100 }]);
    assert.deepEqual((await q('absent_series_total')).samples, []);
  });

  it('evaluates "and" as Prometheus does: the left samples (name and value kept) with a match on the right; on/ignoring; below comparisons', async () => {
    const f = registryFixture();
    f.requests.inc({ code: '200', route: '/a' }, 90);
    f.requests.inc({ code: '500', route: '/a' }, 10);
    f.requests.inc({ code: '200', route: '/b' }, 50);
    const since = new Gauge({ name: 'app_route_since_seconds', help: 'h', labelNames: ['code', 'route'], registers: [f.registry] });
    since.set({ code: '200', route: '/a' }, 1000);
    since.set({ code: '500', route: '/a' }, 2000);
    since.set({ code: '200', route: '/b' }, 3000);
    const q = (query: string) => f.provider.query(query, { now: at(0) });
    // `and` binds looser than `>=`: the right side is the filtered gauge.
    assert.deepEqual((await q('app_requests_total and app_route_since_seconds >= 2000')).samples.map((s) => [s.labels.__name__, s.labels.code, s.labels.route, s.value]).sort(), [
      ['app_requests_total', '200', '/b', 50],
      ['app_requests_total', '500', '/a', 10],
    ]);
    assert.deepEqual(byLabel(await q('sum by (route) (app_requests_total and app_route_since_seconds >= 2000)'), 'route'), { '/a': 10, '/b': 50 });
    // Several left samples may match one right sample (no one-to-one rule for set operators).
    assert.deepEqual(byLabel(await q('sum by (code) (app_requests_total and on (route) app_route_since_seconds{code="500"})'), 'code'), { '200': 90, '500': 10 });
    assert.deepEqual(byLabel(await q('app_requests_total and ignoring (code) app_route_since_seconds{code="200",route="/b"}'), 'route'), { '/b': 50 });
    assert.deepEqual((await q('app_requests_total and app_route_since_seconds > 5000')).samples, [], 'nothing on the right: nothing');
    // The range functions of the relative checks' queries, and a window.
    assert.deepEqual(byLabel(await q('avg by (route) (avg_over_time(app_requests_total[1m]) and last_over_time(app_route_since_seconds[1m]) >= 3000)'), 'route'), { '/b': 50 });
    const fails = async (query: string, message: RegExp) =>
      assert.rejects(f.provider.query(query, { now: at(0) }), (error: unknown) => error instanceof MetricProviderError && message.test(error.message), query);
    await fails('app_requests_total and 1', /"and" needs an instant vector on both sides/);
    await fails('app_requests_total and bool app_route_since_seconds', /"bool" only follows a comparison/);
    await fails('app_requests_total and on (route) group_left app_route_since_seconds', /does not support "group_left"/);
  });

  it('computes rate and increase over counters scraped at several times', async () => {
    const f = registryFixture();
    f.requests.inc({ code: '200', route: '/a' }, 100);
    await f.recorder.scrape(at(0));
    f.requests.inc({ code: '200', route: '/a' }, 30);
    await f.recorder.scrape(at(30));
    f.requests.inc({ code: '200', route: '/a' }, 30);
    const increase = await f.provider.query('increase(app_requests_total[1m])', { now: at(60) });
    assert.deepEqual(increase.samples, [{ labels: { code: '200', route: '/a' }, value: 60 }]);
    const rate = await f.provider.query('sum(rate(app_requests_total[1m]))', { now: at(60) });
    assert.equal(rate.samples[0]!.value, 1);
    const tooShort = await f.provider.query('rate(app_requests_total[10s])', { now: at(60) });
    assert.deepEqual(tooShort.samples, [], 'one point in the range: no rate');
  });

  it('computes histogram_quantile over _bucket series like Prometheus', async () => {
    const f = registryFixture();
    for (const value of [0.05, 0.05, 0.05, 0.05, 0.2, 0.2, 0.2, 0.2, 0.7, 2]) f.latency.observe({ route: '/a' }, value);
    // buckets: le=0.1 → 4, 0.5 → 8, 1 → 9, +Inf → 10
    const q = (query: string) => f.provider.query(query, { now: at(0) });
    close((await q('histogram_quantile(0.5, app_latency_seconds_bucket)')).samples[0]!.value, 0.1 + 0.4 * (1 / 4));
    close((await q('histogram_quantile(0.9, sum by (le) (app_latency_seconds_bucket))')).samples[0]!.value, 1);
    close((await q('histogram_quantile(0.95, app_latency_seconds_bucket{route="/a"})')).samples[0]!.value, 1, 0);
    close((await q('histogram_quantile(0.2, app_latency_seconds_bucket)')).samples[0]!.value, 0.05);
    assert.deepEqual((await q('histogram_quantile(0.5, app_latency_seconds_bucket)')).samples[0]!.labels, { route: '/a' });
    assert.equal((await q('app_latency_seconds_count')).samples[0]!.value, 10);
  });

  it('reports unsupported PromQL and bad queries as provider errors naming the construct', async () => {
    const f = registryFixture();
    const fails = async (query: string, message: RegExp) =>
      assert.rejects(f.provider.query(query, { now: at(0) }), (error: unknown) => error instanceof MetricProviderError && message.test(error.message), query);
    await fails('topk(3, app_requests_total)', /does not support "topk"/);
    await fails('app_requests_total offset 5m', /does not support "offset"/);
    await fails('app_requests_total or app_temperature_celsius', /does not support "or"/);
    await fails('app_requests_total unless app_temperature_celsius', /does not support "unless"/);
    await fails('label_replace(app_requests_total)', /does not support the function "label_replace"/);
    await fails('rate(app_requests_total)', /rate\(\) takes one range selector/);
    await fails('app_requests_total[5m]', /must be the argument of a range function/);
    await fails('sum(app_requests_total', /expected "\)", found end of query/);
    await fails('app_requests_total{code=200}', /expected a quoted string after code=/);
    await fails('{code=~".*"}', /needs a metric name or a matcher that does not match the empty string/);
    await fails('rate(app_requests_total[5m:1m])', /does not support subqueries \("\[5m:1m\]"\), only range selectors such as metric\[5m\]/);
    await fails('rate(app_requests_total[5m:])', /does not support subqueries \("\[5m:\]"\)/);
    await fails('max_over_time(rate(app_requests_total[1m])[10m:1m])', /does not support subqueries \("\[10m:1m\]"\)/);
    await fails('app_requests_total / on (code) group_left app_temperature_celsius', /group_left/);
    assert.throws(() => parsePromql('2 ^ 3'), PromqlError);
  });

  it('matches regexes in linear time, as RE2 does: a pattern that backtracks exponentially returns at once; backreferences and lookarounds are refused', async () => {
    const f = registryFixture();
    const route = `/${'a'.repeat(40)}`;
    f.requests.inc({ code: '200', route }, 1);
    f.requests.inc({ code: '200', route: '/b' }, 1);
    const started = performance.now();
    // A backtracking engine tries every way to split the 40 a's (Fibonacci(40) ≈ 10⁸ of them) for
    // the first two, and would take years for the others; RE2 (re2js) reads each a once.
    for (const pattern of ['/(a|aa)*c', '/(aa|a)*c', '/(a*)*c', '/(.|.){24}Q', '/(a+a+)+c']) {
      assert.equal((await f.provider.query(`app_requests_total{route=~"${pattern}"}`, { now: at(0) })).samples.length, 0, pattern);
    }
    assert.ok(performance.now() - started < 2000, `took ${performance.now() - started} ms`);
    assert.equal((await f.provider.query('app_requests_total{route=~"/(a|b)a*"}', { now: at(0) })).samples.length, 2);
    assert.throws(() => parsePromql('x{route=~"(a)\\\\1"}'), /bad regular expression .* for route: error parsing regexp: invalid escape sequence: `\\1`/);
    assert.throws(() => parsePromql('x{route=~"(?=a)a"}'), /for route: error parsing regexp: invalid or unsupported Perl syntax: `\(\?=`/);
    assert.throws(() => parsePromql('x{route=~"(?<=a)a"}'), /for route: error parsing regexp: invalid named capture/);
    assert.throws(() => parsePromql('x{route=~"(a"}'), /bad regular expression "\(a" for route: error parsing regexp: missing closing \): `\(a`/);
    assert.throws(() => compileAnchored('a{1001}'), (error: unknown) => error instanceof RegexPatternError && error.message === 'error parsing regexp: invalid repeat count: `{1001}`');
    assert.throws(() => compileAnchored('(a\nb'), (error: unknown) => error instanceof RegexPatternError && error.message === 'error parsing regexp: missing closing ): `(a\\nb`', 'the message is one line');
  });

  it('measurements of one round scraped out of order (a later now first) all see the round\'s values in their window', async () => {
    const f = registryFixture();
    f.temperature.set({ room: 'lab' }, 20);
    const query = (ms: number) => f.provider.query('avg_over_time(app_temperature_celsius[1m])', { now: new Date(at(0).getTime() + ms) });
    // Round 1: two metrics measured 10 ms apart.
    await query(0);
    await query(10);
    f.temperature.set({ room: 'lab' }, 30);
    // Round 2, a minute later: the later measurement's scrape lands first.
    assert.deepEqual((await query(60_110)).samples.map((sample) => sample.value), [30]);
    assert.deepEqual((await query(60_100)).samples.map((sample) => sample.value), [30], 'the earlier one is not left with an empty window');
  });

  it('matches a cohort of 2,000 devices, in a group or not, with the same matches', async () => {
    const ids = Array.from({ length: 2_000 }, (_, i) => `device-${i}.site`);
    const cohort = ids.map((id) => id.replace(/[.]/g, '\\.')).join('|');
    assert.equal(compileAnchored(`(${cohort}):9100`).matches('device-7.site:9100'), true);
    assert.equal(compileAnchored(`(${cohort})(x|y)`).matches('device-7.site'), false);
    const history = new InMemoryReportHistory();
    history.add(...ids.map((deviceId) => report({ deviceId, ts: at(-60) })), report({ deviceId: 'device-1xsite', ts: at(-60) }));
    const provider = new BuiltinProvider({ history });
    // In a PromQL string a regex's backslash is written twice.
    const devices = async (pattern: string) => byLabel(await provider.query(`fleetprune_device_accuracy_ratio{device=~"${pattern.replaceAll('\\', '\\\\')}"}`, { now: at(0) }), 'device');
    const grouped = await devices(`(${cohort})`);
    assert.equal(Object.keys(grouped).length, 2_000);
    assert.equal(grouped['device-1xsite'], undefined, 'an escaped dot is a dot');
    assert.deepEqual(grouped, await devices(cohort));
  });
});

function report(fields: Partial<DeviceReport> & { deviceId: string; ts: Date }): DeviceReport {
  return { model: 'wine', version: '2', role: 'candidate', cohort: 'pilot', accuracy: 0.95, latencyMs: { p50: 2, p95: 5, p99: 9 }, errors: 0, predictions: 100, ...fields };
}

describe('builtin provider over report history', () => {
  it('synthesizes per-device gauges and counters with model/version/role/cohort/device labels', async () => {
    const history = new InMemoryReportHistory();
    history.add(
      report({ deviceId: 'd1', ts: at(-120), accuracy: 0.9, errors: 1, predictions: 100 }),
      report({ deviceId: 'd1', ts: at(-60), accuracy: 0.94, errors: 3, predictions: 100 }),
      report({ deviceId: 'd2', ts: at(-60), accuracy: 0.96, latencyMs: { p50: 1, p95: 8, p99: 12 } }),
      report({ deviceId: 'd1', ts: at(-60), role: 'active', version: '1', accuracy: 0.97 }),
      report({ deviceId: 'd1', ts: at(-3600), accuracy: 0.1 }),
    );
    const provider = new BuiltinProvider({ history });
    const q = (query: string) => provider.query(query, { now: at(0) });
    assert.deepEqual(byLabel(await q('fleetprune_device_accuracy_ratio{role="candidate"}'), 'device'), { d1: 0.94, d2: 0.96 });
    close(byLabel(await q('avg_over_time(fleetprune_device_accuracy_ratio{version="2",device="d1"}[5m])'), 'device').d1, 0.92);
    assert.deepEqual(byLabel(await q('fleetprune_device_accuracy_ratio{role="active"}'), 'version'), { '1': 0.97 });
    assert.deepEqual(byLabel(await q('max by (device) (fleetprune_device_latency_p95_seconds)'), 'device'), { d1: 0.005, d2: 0.008 });
    assert.deepEqual(await q('sum(increase(fleetprune_device_prediction_errors_total{role="candidate"}[5m]))'), { resultType: 'vector', samples: [{ labels: {}, value: 4 }] });
    const ratio = await q('sum(rate(fleetprune_device_prediction_errors_total{role="candidate"}[5m])) / sum(rate(fleetprune_device_predictions_total{role="candidate"}[5m]))');
    close(ratio.samples[0]!.value, 4 / 300);
    assert.deepEqual(byLabel(await q('count_over_time(fleetprune_device_accuracy_ratio{role="candidate"}[90s])'), 'device'), { d1: 1, d2: 1 });
    assert.deepEqual(byLabel(await q('sum by (cohort) (increase(fleetprune_device_reports_total[10m]))'), 'cohort'), { pilot: 4 });
  });

  it('increase/rate over history counters sum the counts of the reports in the range, whatever reports came before it', async () => {
    const query = async (reports: DeviceReport[], promql: string) => {
      const history = new InMemoryReportHistory();
      history.add(...reports);
      return (await new BuiltinProvider({ history }).query(promql, { now: at(0) })).samples.map((sample) => sample.value);
    };
    const inWindow = [report({ deviceId: 'd1', ts: at(-30), predictions: 100, errors: 50 }), report({ deviceId: 'd1', ts: at(-10), predictions: 100 })];
    const earlier = report({ deviceId: 'd1', ts: at(-180), predictions: 100, errors: 0 });
    for (const reports of [inWindow, [earlier, ...inWindow]]) {
      const label = `${reports.length} reports`;
      assert.deepEqual(await query(reports, 'sum(increase(fleetprune_device_predictions_total[1m]))'), [200], label);
      assert.deepEqual(await query(reports, 'sum(increase(fleetprune_device_prediction_errors_total[1m]))'), [50], label);
      assert.deepEqual(await query(reports, 'sum(rate(fleetprune_device_predictions_total[1m]))'), [200 / 60], label);
      assert.deepEqual(await query(reports, 'sum(increase(fleetprune_device_reports_total[1m]))'), [2], label);
    }
    // One report in the range is enough, with or without an earlier one in the fetched reach.
    assert.deepEqual(await query([earlier, report({ deviceId: 'd1', ts: at(-10), errors: 7 })], 'increase(fleetprune_device_prediction_errors_total[1m])'), [7]);
    assert.deepEqual(await query([report({ deviceId: 'd1', ts: at(-10), errors: 7 })], 'increase(fleetprune_device_prediction_errors_total[1m])'), [7]);
    // The same query with a longer range elsewhere in it (a longer fetch) gives the same increase.
    assert.deepEqual(
      await query([earlier, ...inWindow], 'sum(increase(fleetprune_device_predictions_total[1m])) + 0 * sum(increase(fleetprune_device_predictions_total[10m]))'),
      [200],
    );
  });

  it('combines registry series and report history in one query', async () => {
    const f = registryFixture();
    const history = new InMemoryReportHistory();
    history.add(report({ deviceId: 'd1', ts: at(-10) }));
    f.temperature.set({ room: 'lab' }, 2);
    const provider = new BuiltinProvider({ recorder: f.recorder, history });
    const result = await provider.query('sum(fleetprune_device_accuracy_ratio) * scalar(sum(app_temperature_celsius))', { now: at(0) });
    close(result.samples[0]!.value, 1.9);
  });

  it('counts a device report once when the server both exports it and keeps it in history; history fills in what is no longer exported', async () => {
    const registry = new Registry();
    const exporter = new ReportMetricsExporter(registry);
    const history = new InMemoryReportHistory();
    const reports = ['d1', 'd2'].flatMap((deviceId) => [report({ deviceId, ts: at(-10) }), report({ deviceId, ts: at(-10), role: 'active', version: '1', accuracy: 0.9 })]);
    history.add(...reports);
    reports.forEach((entry) => exporter.observe(entry));
    const provider = new BuiltinProvider({ recorder: new RegistrySeriesRecorder(registry), history });
    const q = async (query: string) => (await provider.query(query, { now: at(0) })).samples;
    assert.deepEqual(await q('count(fleetprune_device_accuracy_ratio{role="candidate"})'), [{ labels: {}, value: 2 }]);
    assert.equal((await q('fleetprune_device_accuracy_ratio{role="candidate"}')).length, 2);
    // Candidate over active per device: one series each side, not a many-to-one match.
    const ratio = await q('fleetprune_device_accuracy_ratio{role="candidate"} / ignoring(role, version) fleetprune_device_accuracy_ratio{role="active"}');
    assert.deepEqual(ratio.map((sample) => sample.labels.device).sort(), ['d1', 'd2']);
    // A restarted server exports nothing yet: the history's series answer.
    const restarted = new BuiltinProvider({ recorder: new RegistrySeriesRecorder(new Registry()), history });
    assert.deepEqual((await restarted.query('count(fleetprune_device_accuracy_ratio{role="candidate"})', { now: at(0) })).samples, [{ labels: {}, value: 2 }]);
  });

  it('a label set the server stopped exporting (a dropped candidate, a revoked device) is stale from then on, as Prometheus marks it: history does not bring it back to instant selectors', async () => {
    let clock = T0 - 60_000;
    const registry = new Registry();
    const exporter = new ReportMetricsExporter(registry, undefined, { now: () => clock });
    const history = new InMemoryReportHistory();
    // The recorder holds no series (past its limit, say), so only history answers: what it says must still agree with the exporter.
    const provider = new BuiltinProvider({ history, withdrawals: exporter });
    const q = async (query: string) => (await provider.query(query, { now: at(0) })).samples;
    exporter.restore([]);
    const reports = ['d1', 'd2', 'd3'].map((deviceId) => report({ deviceId, ts: at(-50), version: '3', accuracy: 0.25 }));
    history.add(...reports);
    reports.forEach((entry) => exporter.observe(entry));
    assert.deepEqual(byLabel({ resultType: 'vector', samples: await q('fleetprune_device_accuracy_ratio{role="candidate"}') }, 'device'), { d1: 0.25, d2: 0.25, d3: 0.25 });

    // d1 drops the candidate (a rollback), d2 is revoked, 20 s later: their series go, as on /metrics.
    clock = T0 - 30_000;
    exporter.keepSlots('d1', { active: { model: 'wine', version: '1' }, candidate: null });
    exporter.forgetDevice('d2');
    assert.deepEqual(byLabel({ resultType: 'vector', samples: await q('fleetprune_device_accuracy_ratio{role="candidate"}') }, 'device'), { d3: 0.25 });
    assert.deepEqual(await q('count(fleetprune_device_reports_total{version="3"})'), [{ labels: {}, value: 1 }], 'counters too');
    // Range functions still see their reports, as Prometheus' do before the staleness marker.
    assert.deepEqual(await q('sum(count_over_time(fleetprune_device_accuracy_ratio{version="3"}[5m]))'), [{ labels: {}, value: 3 }]);

    // A candidate of the same version benchmarked again on d1 later is exported, and seen again.
    clock = T0 - 10_000;
    const again = report({ deviceId: 'd1', ts: at(-10), version: '3', accuracy: 0.75 });
    history.add(again);
    exporter.observe(again);
    assert.deepEqual(byLabel({ resultType: 'vector', samples: await q('fleetprune_device_accuracy_ratio{role="candidate"}') }, 'device'), { d1: 0.75, d3: 0.25 });

    // After a restart the store's totals are exported again (restore): a label set they do not hold
    // (d3's candidate, dropped while the server was down) is stale from the restore on.
    clock = T0 - 5_000;
    exporter.restore([{ report: again, counts: { predictions: 100, errors: 0, reports: 2 } }]);
    assert.deepEqual(byLabel({ resultType: 'vector', samples: await q('fleetprune_device_accuracy_ratio{role="candidate"}') }, 'device'), { d1: 0.75 });
  });

  it('gives up on a read that outlasts the query timeout (a hung report store), as a provider error', async () => {
    const hung: ReportHistory = { reports: () => new Promise(() => {}) };
    const provider = new BuiltinProvider({ history: hung });
    await assert.rejects(provider.query('count(fleetprune_device_accuracy_ratio)', { now: at(0), timeoutMs: 50 }), (error: Error) => {
      assert.ok(error instanceof MetricProviderError);
      assert.equal(error.message, 'builtin: timed out after 50 ms');
      return true;
    });
    const aborted = new AbortController();
    const pending = provider.query('count(fleetprune_device_accuracy_ratio)', { now: at(0), signal: aborted.signal });
    aborted.abort();
    await assert.rejects(pending, /builtin: aborted/);
  });
});

describe('builtin provider: series limit', () => {
  it('says once when the recorder leaves series out for its limit', async () => {
    const registry = new Registry();
    const gauge = new Gauge({ name: 'app_queue_depth', help: 'h', labelNames: ['queue'], registers: [registry] });
    for (const queue of ['a', 'b', 'c', 'd']) gauge.set({ queue }, 1);
    const limits: number[] = [];
    const recorder = new RegistrySeriesRecorder(registry, { maxSeries: 2, onLimit: (max) => limits.push(max) });
    await recorder.scrape(at(0));
    await recorder.scrape(at(1));
    assert.equal(recorder.series().length, 2);
    assert.deepEqual(limits, [2], 'said once');
  });
});

describe('builtin provider: a fleet-sized report history', () => {
  it('answers a relative query over 9,000 devices (100k+ series; spreading them as call arguments overflowed the stack)', async () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const devices = Array.from({ length: 9000 }, (_, i) => `dev-${i}`);
    const reports: DeviceReport[] = devices.flatMap((deviceId) =>
      (['candidate', 'active'] as const).map((role) => ({
        model: 'm', version: role === 'candidate' ? '2' : '1', role, cohort: 'c', deviceId, accuracy: 0.9,
        latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 100, ts: new Date(now - 60_000),
      })),
    );
    const history = new InMemoryReportHistory();
    history.add(...reports);
    const provider = new BuiltinProvider({ history });
    const result = await provider.query(`count(fleetprune_device_accuracy_ratio{model="m",version="2",role="candidate",device=~"dev-1|dev-2|dev-8999"})`, { now: new Date(now) });
    assert.deepEqual(result.samples.map((sample) => sample.value), [3]);
  });
});
