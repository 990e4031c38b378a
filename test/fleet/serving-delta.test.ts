import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { servingDelta } from '../../server/fleet/store-fleet-ingest.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';

const serving = (predictions: number, errors: number, shadowRows: number, shadowErrors?: number) => ({ predictions, errors, shadowRows, shadowAgreements: 0, ...(shadowErrors === undefined ? {} : { shadowErrors }) });

test('what a device served between heartbeats: differences of its counters; all of them after a restart; nothing when idle', () => {
  assert.deepEqual(servingDelta(serving(100, 1, 40, 2), serving(160, 1, 70, 5)), { predictions: 60, errors: 0, shadowRows: 30, shadowErrors: 3 });
  assert.deepEqual(servingDelta(serving(100, 1, 40, 2), serving(5, 0, 0, 0)), { predictions: 5, errors: 0, shadowRows: 0, shadowErrors: 0 }, 'a counter went down: the agent restarted');
  assert.deepEqual(servingDelta(null, serving(7, 0, 3)), { predictions: 7, errors: 0, shadowRows: 3, shadowErrors: 0 }, 'the first heartbeat; an agent without shadowErrors');
  assert.equal(servingDelta(serving(100, 1, 40, 2), serving(100, 1, 40, 2)), null);
});

test("served rows and failures add to a model's counters and set its error ratio, for the active model and the shadow-run candidate", async () => {
  const registry = new Registry();
  const exporter = new ReportMetricsExporter(registry);
  const values = async (name: string) =>
    Object.fromEntries(((await registry.getMetricsAsJSON()).find((entry) => entry.name === name)?.values ?? []).map((v) => [`${v.labels.role} ${v.labels.version}`, v.value]));
  const base = { deviceId: 'd1', cohort: 'pilot', active: { model: 'wine', version: '1' }, candidate: { model: 'wine', version: '2' } };
  exporter.observeServing({ ...base, predictions: 98, errors: 2, shadowRows: 45, shadowErrors: 5 });
  exporter.observeServing({ ...base, predictions: 100, errors: 0, shadowRows: 50, shadowErrors: 0 });
  assert.deepEqual(await values(DEVICE_REPORT_METRICS.predictions), { 'active 1': 200, 'candidate 2': 100 });
  assert.deepEqual(await values(DEVICE_REPORT_METRICS.errors), { 'active 1': 2, 'candidate 2': 5 });
  assert.deepEqual(await values(DEVICE_REPORT_METRICS.errorRatio), { 'active 1': 0, 'candidate 2': 0 }, 'the ratio over the last interval');
  exporter.observeServing({ ...base, predictions: 0, errors: 0, shadowRows: 9, shadowErrors: 1 });
  assert.deepEqual(await values(DEVICE_REPORT_METRICS.errorRatio), { 'active 1': 0, 'candidate 2': 0.1 }, 'an idle side keeps its last ratio');
  // Without a candidate (dropped), shadow numbers go nowhere.
  exporter.observeServing({ ...base, candidate: null, predictions: 10, errors: 0, shadowRows: 10, shadowErrors: 10 });
  assert.equal((await values(DEVICE_REPORT_METRICS.errors))['candidate 2'], 6);
});
