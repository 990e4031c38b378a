import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Registry } from 'prom-client';
import { restoreExports } from '../../server/fleet/serving-totals.ts';
import type { StoreLocation } from '../../server/store/open-store.ts';
import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { BenchmarkReport, ModelRef, Telemetry } from '../../shared/protocol/payloads.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { storeFleetServer } from './store-fleet-server.ts';

const ref = (version: string): ModelRef => ({ model: 'iris', version, sha256: version.repeat(64).slice(0, 64) });

function heartbeat(uptimeSeconds: number, predictions: number, errors: number, shadowRows: number, shadowErrors: number, candidate: ModelRef | null = ref('2')): Telemetry {
  return {
    schema: 1, deviceId: 'osaka-1', sentAt: new Date(Date.UTC(2026, 2, 1, 9, 0, uptimeSeconds)).toISOString(), uptimeSeconds, cpuPercent: 1, rssBytes: 1e8,
    active: ref('1'), candidate, previous: null, serving: { predictions, errors, shadowRows, shadowAgreements: shadowRows, shadowErrors },
  };
}

function benchmark(id: string): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string) => ({
    ...ref(version), role, score: { accuracy: 0.9, correct: 27, total: 30 },
    latencyMs: { p50: 0.1, p95: 0.2, p99: 0.3, samples: 50 }, batchSize: 64, throughputRowsPerSecond: 1000, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return { schema: 1, id, kind: 'benchmark', deviceId: 'osaka-1', createdAt: '2026-03-01T08:59:00.000Z', assignmentId: null, holdout: { rows: 30, fingerprint: 'f', task: 'classification' }, active: model('active', '1'), candidate: model('candidate', '2') };
}

const serverOn = (t: TestContext, location: StoreLocation) => storeFleetServer(t, location, { registered: [ref('1'), ref('2')] });

/** `role version: predictions/errors ratio` for each exported label set. */
async function exported(registry: Registry): Promise<string[]> {
  const metrics = await registry.getMetricsAsJSON();
  const values = (name: string) => new Map((metrics.find((metric) => metric.name === name)?.values ?? []).map((v) => [`${v.labels.role} ${v.labels.version} ${v.labels.cohort}`, v.value]));
  const predictions = values(DEVICE_REPORT_METRICS.predictions);
  const errors = values(DEVICE_REPORT_METRICS.errors);
  const ratios = values(DEVICE_REPORT_METRICS.errorRatio);
  return [...predictions.keys()].sort().map((key) => `${key}: ${predictions.get(key)}/${errors.get(key)} ${ratios.get(key)}`);
}

for (const engine of STORE_ENGINES) {
  describe(`served totals on ${engine}`, () => {
    test('a new server on the same store (a restart, a standby elected) exports the counters the heartbeats built and goes on from them', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await first.fleet.repos.devices.insert({ id: 'osaka-1', labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
      assert.equal(await first.ingest.ingestReport(benchmark('b-1')), 'ingested');
      await first.ingest.recordTelemetry(heartbeat(10, 99, 1, 90, 10));
      await first.ingest.recordTelemetry(heartbeat(20, 198, 2, 180, 20));
      const before = await exported(first.registry);
      // The benchmark's 30 holdout rows, and the 200 rows served on each side (the last interval's ratio).
      assert.deepEqual(before, ['active 1 pilot: 230/2 0.01', 'candidate 2 pilot: 230/20 0.1']);
      await first.store.close();

      const second = await serverOn(t, location);
      await restoreExports(second.exporter, second.fleet.repos);
      assert.deepEqual(await exported(second.registry), before, 'the same counters and ratios, before any heartbeat');
      // Served while no server was there: counted once, from the last heartbeat stored.
      await second.ingest.recordTelemetry(heartbeat(60, 298, 2, 280, 20));
      await second.ingest.recordTelemetry(heartbeat(60, 298, 2, 280, 20)); // redelivered
      assert.deepEqual(await exported(second.registry), ['active 1 pilot: 330/2 0', 'candidate 2 pilot: 330/20 0']);
      // The agent restarted: its counters start again from 0, and all of them count.
      await second.ingest.recordTelemetry(heartbeat(3, 49, 1, 45, 5));
      assert.deepEqual(await exported(second.registry), ['active 1 pilot: 380/3 0.02', 'candidate 2 pilot: 380/25 0.1']);
    });

    test('two servers writing the same heartbeat at once (a deposed leader and its successor) count it once', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const a = await serverOn(t, location);
      const b = await serverOn(t, location);
      await a.fleet.repos.devices.insert({ id: 'osaka-1', labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
      await a.ingest.recordTelemetry(heartbeat(10, 99, 1, 90, 10));
      await Promise.all([a.ingest.recordTelemetry(heartbeat(20, 198, 2, 180, 20)), b.ingest.recordTelemetry(heartbeat(20, 198, 2, 180, 20))]);
      const candidate = [...a.served, ...b.served].map((delta) => delta.shadowRows + delta.shadowErrors);
      assert.deepEqual(candidate, [100, 100], 'the second heartbeat added once, by one of them');
      const totals = (await a.fleet.repos.devices.get('osaka-1'))!.servingTotals.map((total) => `${total.role} ${total.version}: ${total.predictions}/${total.errors}`);
      assert.deepEqual(totals.sort(), ['active 1: 200/2', 'candidate 2: 200/20']);
    });
  });
}

test('served totals: a new version or cohort starts afresh, a model the slots no longer hold goes, bad stored entries are left out', async (t) => {
  const location = await freshStoreLocation(t, 'sqlite');
  const server = await serverOn(t, location!);
  await server.fleet.repos.devices.insert({ id: 'osaka-1', labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
  const totals = async () => (await server.fleet.repos.devices.get('osaka-1'))!.servingTotals.map((total) => `${total.role} ${total.version} ${total.cohort}: ${total.predictions}/${total.errors}`).sort();
  await server.ingest.recordTelemetry(heartbeat(10, 9, 1, 9, 1));
  await server.ingest.recordTelemetry(heartbeat(20, 18, 2, 18, 2, ref('3')));
  assert.deepEqual(await totals(), ['active 1 pilot: 20/2', 'candidate 3 pilot: 10/1'], 'candidate 3 replaced candidate 2');
  await server.ingest.recordTelemetry(heartbeat(30, 27, 3, 27, 3, null));
  assert.deepEqual(await totals(), ['active 1 pilot: 30/3'], 'the dropped candidate\'s total went');
  await server.store.engine.run("UPDATE devices SET labels = ? WHERE id = 'osaka-1'", [JSON.stringify({ cohort: 'fleet' })]);
  await server.ingest.recordTelemetry(heartbeat(40, 36, 4, 27, 3, null));
  assert.deepEqual(await totals(), ['active 1 fleet: 10/1']);
  // A stored entry that is not well-formed (hand-edited, another version's) is left out, never a failed read or a negative counter.
  const stored = JSON.parse(String((await server.store.engine.get("SELECT serving FROM devices WHERE id = 'osaka-1'"))!.serving));
  stored.totals.push({ model: 'iris', version: '9', role: 'candidate', cohort: 'fleet', predictions: -5, errors: 0, ratio: 0, at: 'x' }, 'nonsense');
  await server.store.engine.run("UPDATE devices SET serving = ? WHERE id = 'osaka-1'", [JSON.stringify(stored)]);
  assert.deepEqual(await totals(), ['active 1 fleet: 10/1']);
  assert.equal((await server.fleet.repos.devices.get('osaka-1'))!.heartbeat!.serving!.predictions, 36, 'the heartbeat\'s own counters read as before');
  await server.store.engine.run("UPDATE devices SET serving = '{\"totals\": 7}' WHERE id = 'osaka-1'");
  await restoreExports(server.exporter, server.fleet.repos);
  assert.deepEqual(await exported(server.registry), []);
});
