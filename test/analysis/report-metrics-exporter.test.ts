import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { MAX_EXPORTED_MODELS_PER_DEVICE, ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';

function report(overrides: Partial<DeviceReport> = {}): DeviceReport {
  return {
    model: 'wine', version: '2', role: 'candidate', cohort: 'pilot', deviceId: 'd1',
    accuracy: 0.9, mse: 0.5, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 1, predictions: 10, ts: new Date(), ...overrides,
  };
}

/** The label sets of one metric, as `device/model/version/role/cohort` strings. */
async function series(registry: Registry, name: string): Promise<string[]> {
  const metric = (await registry.getMetricsAsJSON()).find((entry) => entry.name === name);
  return (metric?.values ?? []).map(({ labels }) => `${labels.device}/${labels.model}/${labels.version}/${labels.role}/${labels.cohort}`).sort();
}

test('a device exports one label set per model and role: a new version or cohort replaces the old series in every metric', async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  exporter.observe(report({ role: 'active', version: '1' }));
  exporter.observe(report());
  exporter.observe(report());
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/wine/1/active/pilot', 'd1/wine/2/candidate/pilot']);
  const reports = (await registry.getMetricsAsJSON()).find((entry) => entry.name === DEVICE_REPORT_METRICS.reports)!;
  assert.equal(reports.values.find((value) => value.labels.role === 'candidate')?.value, 2, 'the same label set keeps counting');

  exporter.observe(report({ version: '3' }));
  exporter.observe(report({ role: 'active', version: '1', cohort: 'fleet' }));
  for (const name of Object.values(DEVICE_REPORT_METRICS)) {
    assert.deepEqual(await series(registry, name), ['d1/wine/1/active/fleet', 'd1/wine/3/candidate/pilot'], name);
  }
});

test('a device that reports ever new models keeps the latest few; other devices, and a revoked one for good', async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  exporter.observe(report({ deviceId: 'd2' }));
  for (let i = 0; i < 100; i++) exporter.observe(report({ model: `m${i}` }));
  const kept = await series(registry, DEVICE_REPORT_METRICS.latencyP50);
  assert.equal(kept.length, MAX_EXPORTED_MODELS_PER_DEVICE + 1);
  assert.ok(kept.includes('d2/wine/2/candidate/pilot'), 'another device is untouched');
  assert.ok(kept.includes('d1/m99/2/candidate/pilot') && !kept.includes('d1/m0/2/candidate/pilot'), 'the least recently reported models go first');

  exporter.forgetDevice('d1');
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.latencyP50), ['d2/wine/2/candidate/pilot']);
  // A report or heartbeat read before the revocation and exported after it brings nothing back (ids are never reused).
  exporter.observe(report());
  exporter.observeServing({ deviceId: 'd1', cohort: 'pilot', active: { model: 'wine', version: '1' }, candidate: null, predictions: 10, errors: 0, shadowRows: 0, shadowErrors: 0 });
  for (const name of Object.values(DEVICE_REPORT_METRICS)) assert.ok(!(await series(registry, name)).some((labels) => labels.startsWith('d1/')), name);
  exporter.reset();
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.latencyP50), []);
});

test("a device's series keep to the models it holds: a dropped candidate goes, a promoted one also becomes its active series", async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const v1 = { model: 'wine', version: '1' };
  const v2 = { model: 'wine', version: '2' };
  exporter.observe(report({ role: 'active', version: '1', accuracy: 0.8 }));
  exporter.observe(report({ accuracy: 0.95 }));
  exporter.keepSlots('d1', { active: v1, candidate: v2 });
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/wine/1/active/pilot', 'd1/wine/2/candidate/pilot'], 'what it holds stays');

  // Promoted: v2's numbers are now also the device's active series; v1's are gone.
  exporter.keepSlots('d1', { active: v2, candidate: null });
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/wine/2/active/pilot', 'd1/wine/2/candidate/pilot']);
  const accuracy = (await registry.getMetricsAsJSON()).find((entry) => entry.name === DEVICE_REPORT_METRICS.accuracy)!;
  assert.deepEqual(accuracy.values.map((value) => value.value), [0.95, 0.95]);
  const reports = (await registry.getMetricsAsJSON()).find((entry) => entry.name === DEVICE_REPORT_METRICS.reports)!;
  assert.deepEqual(reports.values.map((value) => `${value.labels.role} ${value.value}`).sort(), ['active 0', 'candidate 1'], 'the copy is no new report');

  // A candidate dropped (or never benchmarked since): its series go, every metric.
  exporter.observe(report({ version: '3', accuracy: 0.5 }));
  exporter.keepSlots('d1', { active: v2, candidate: null });
  for (const name of Object.values(DEVICE_REPORT_METRICS)) assert.deepEqual(await series(registry, name), ['d1/wine/2/active/pilot'], name);
  // (the v3 candidate replaced v2's candidate series, and went with its drop)
  // Another model the device no longer runs.
  exporter.keepSlots('d1', { active: { model: 'iris', version: '1' }, candidate: null });
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), []);
  // Restored after a restart: the benchmark totals stand as the store kept them (it drops them
  // when their series go; its slots may be older than they are), served rows alone go with a
  // model the slots no longer hold (a late heartbeat's rows; an answer drops its own from the store).
  const served = { model: 'wine', version: '3', role: 'candidate' as const, cohort: 'pilot', predictions: 5, errors: 0, ratio: 0, at: '2026-03-01T09:00:00.000Z' };
  exporter.restore([report({ role: 'active', version: '1' }), report({ model: 'iris' }), { deviceId: 'd1', total: served }], new Map([['d1', { active: v1, candidate: null }]]));
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/iris/2/candidate/pilot', 'd1/wine/1/active/pilot']);
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.predictions), ['d1/iris/2/candidate/pilot', 'd1/wine/1/active/pilot'], 'the served rows of wine v3 alone go');
});

test('restored: a promoted model whose served total came back first gets the pilot\'s numbers as its active series from the stored copy; with no copy stored (live made none) it gets none', async () => {
  const v2 = { model: 'wine', version: '2' };
  const served = { deviceId: 'd1', total: { model: 'wine', version: '2', role: 'active' as const, cohort: 'pilot', predictions: 70, errors: 1, ratio: 0.01, at: '2026-03-01T09:00:00.000Z' } };
  const pilot = report({ accuracy: 0.95, errors: 0 });
  const restoredActive = async (entries: Parameters<ReportMetricsExporter['restore']>[0]) => {
    const registry = new Registry();
    new ReportMetricsExporter(registry).restore(entries, new Map([['d1', { active: v2, candidate: null }]]));
    const metrics = await registry.getMetricsAsJSON();
    const active = (name: string) => metrics.find((entry) => entry.name === name)?.values.find((value) => value.labels.role === 'active')?.value;
    return [active(DEVICE_REPORT_METRICS.accuracy), active(DEVICE_REPORT_METRICS.predictions), active(DEVICE_REPORT_METRICS.errors), active(DEVICE_REPORT_METRICS.reports)];
  };
  // As the store gives it back: the pilot's benchmark (candidate), what v2 served as the active model, then the promotion's copy.
  const copy = { report: { ...pilot, role: 'active' as const }, counts: { predictions: 0, errors: 0, reports: 0 }, since: new Date('2026-03-01T09:05:00.000Z') };
  assert.deepEqual(await restoredActive([pilot, served, copy]), [0.95, 70, 1, 0]);
  // A heartbeat showing the promotion was read before its answer: live made no copy, nor does a restore.
  assert.deepEqual(await restoredActive([pilot, served]), [undefined, 70, 1, undefined]);
});

test('a heartbeat removes the series of models it shows the device no longer holds, unless it was sent before they were measured or promoted', async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const at = (minute: number) => new Date(Date.UTC(2026, 2, 1, 9, minute));
  const v1 = { model: 'wine', version: '1' };
  const v2 = { model: 'wine', version: '2' };
  exporter.observe(report({ role: 'active', version: '1', ts: at(10) }));
  exporter.observe(report({ ts: at(10) }));
  exporter.reconcileSlots('d1', { active: v1, candidate: null }, at(5));
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/wine/1/active/pilot', 'd1/wine/2/candidate/pilot'], 'sent before the benchmark: nothing moves');
  // Promoted by an answer at 09:20; a heartbeat sent at 09:15 (still v1 active) is older than that.
  exporter.keepSlots('d1', { active: v2, candidate: null }, at(20));
  exporter.reconcileSlots('d1', { active: v1, candidate: v2 }, at(15));
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), ['d1/wine/2/active/pilot', 'd1/wine/2/candidate/pilot']);
  exporter.reconcileSlots('d1', { active: { model: 'wine', version: '3' }, candidate: null }, at(30));
  assert.deepEqual(await series(registry, DEVICE_REPORT_METRICS.accuracy), [], 'a newer heartbeat: v2 is no longer held');
  exporter.reconcileSlots('unknown', { active: null, candidate: null }, at(30)); // nothing exported for it: nothing happens
});

test("the report-time gauge tells which benchmark a label set's gauges hold: a new report moves it, served rows do not, a promotion's copy keeps the candidate's", async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const times = async () => Object.fromEntries(((await registry.getMetricsAsJSON()).find((entry) => entry.name === DEVICE_REPORT_METRICS.reportTimestamp)?.values ?? []).map(({ labels, value }) => [`${labels.version}/${labels.role}`, value]));
  const T = Date.UTC(2026, 0, 1, 12);
  exporter.observe(report({ role: 'active', version: '1', ts: new Date(T - 240_500) }));
  exporter.observe(report({ ts: new Date(T - 240_000) }));
  assert.deepEqual(await times(), { '1/active': (T - 240_500) / 1000, '2/candidate': (T - 240_000) / 1000 }, 'Unix seconds, milliseconds kept');
  // Heartbeats' served rows set the error ratio, not the benchmark the other gauges hold.
  exporter.observeServing({ deviceId: 'd1', cohort: 'pilot', active: { model: 'wine', version: '1' }, candidate: { model: 'wine', version: '2' }, predictions: 10, errors: 0, shadowRows: 10, shadowErrors: 0, sentAt: new Date(T) });
  assert.deepEqual(await times(), { '1/active': (T - 240_500) / 1000, '2/candidate': (T - 240_000) / 1000 });
  exporter.observe(report({ ts: new Date(T - 30_000) }));
  assert.equal((await times())['2/candidate'], (T - 30_000) / 1000, 'a new benchmark of the same label set moves it');
  exporter.keepSlots('d1', { active: { model: 'wine', version: '2' }, candidate: null }, new Date(T));
  assert.deepEqual(await times(), { '2/active': (T - 30_000) / 1000, '2/candidate': (T - 30_000) / 1000 }, 'the promoted copy holds the candidate\'s benchmark, of its time');
  exporter.forgetDevice('d1');
  assert.deepEqual(await times(), {}, 'removed with the label set');
});

test("the report time is the server's receipt when given (device clocks may be off), and a label set of served rows alone (a cohort changed since its benchmark) gets its rows' receipt", async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const times = async () => Object.fromEntries(((await registry.getMetricsAsJSON()).find((entry) => entry.name === DEVICE_REPORT_METRICS.reportTimestamp)?.values ?? []).map(({ labels, value }) => [`${labels.version}/${labels.role}/${labels.cohort}`, value]));
  const T = Date.UTC(2026, 0, 1, 12);
  // The device's clock is 10 minutes ahead; the server received the report at T - 240 s.
  exporter.observe(report({ role: 'active', version: '1', ts: new Date(T + 360_000), receivedAt: new Date(T - 240_000) }));
  exporter.observe(report({ ts: new Date(T + 360_000), receivedAt: new Date(T - 240_000) }));
  assert.deepEqual(await times(), { '1/active/pilot': (T - 240_000) / 1000, '2/candidate/pilot': (T - 240_000) / 1000 });
  // The device moved to another cohort: its heartbeat (sent after the benchmark, on the device's clock)
  // replaces the label sets with served rows that have no benchmark behind them.
  const before = Date.now();
  exporter.observeServing({ deviceId: 'd1', cohort: 'wave2', active: { model: 'wine', version: '1' }, candidate: { model: 'wine', version: '2' }, predictions: 10, errors: 1, shadowRows: 10, shadowErrors: 1, sentAt: new Date(T + 400_000) });
  const after = await times();
  assert.deepEqual(Object.keys(after).sort(), ['1/active/wave2', '2/candidate/wave2'], 'the error ratios of the new cohort have a report time, so relative error checks count them');
  for (const value of Object.values(after)) assert.ok(value! * 1000 >= before - 1 && value! * 1000 <= Date.now() + 1, `received now: ${value}`);
});
