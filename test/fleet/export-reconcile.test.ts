import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { forgetRevokedDevices } from '../../server/fleet/export-reconcile.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

/* Servers sharing one database: each checks now and then that the devices it exports are still live. */

function benchmark(deviceId: string, id: string): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string) => ({
    model: 'wine', version, sha256: version.repeat(64), role, score: { accuracy: 0.9, correct: 45, total: 50 },
    latencyMs: { p50: 1, p95: 2, p99: 3, samples: 50 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return { schema: 1, id, kind: 'benchmark', deviceId, createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 50, fingerprint: 'f', task: 'classification' }, active: model('active', '1'), candidate: model('candidate', '2') };
}

for (const engine of STORE_ENGINES) {
  describe(`servers sharing a database on ${engine}`, () => {
    test('the periodic check forgets the devices revoked through another server (and only those)', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const [a, b] = [await openStore(location), await openStore(location)];
      t.after(async () => {
        await a.close();
        await b.close();
      });
      await registerVersions(a, ['1', '2'].map((version) => ({ model: 'wine', version, sha256: version.repeat(64) })));
      const [fleetA, fleetB] = [new FleetStore(a), new FleetStore(b)];
      for (const id of ['osaka-1', 'kyoto-1']) await fleetA.repos.devices.insert({ id, labels: {}, secretHash: '$7$101$c2FsdA==$x', tokenId: `tok-${id}`, enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
      const registry = new Registry();
      const exporter = new ReportMetricsExporter(registry);
      const ingestB = new StoreFleetIngest({ fleet: fleetB, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), onBenchmark: (reports) => reports.forEach((report) => exporter.observe(report)) });
      for (const id of ['osaka-1', 'kyoto-1']) assert.equal(await ingestB.ingestReport(benchmark(id, `b-${id}`)), 'ingested');
      // A ghost: exported, then gone from the store altogether.
      exporter.observe({ model: 'wine', version: '2', role: 'candidate', cohort: 'none', deviceId: 'ghost-1', accuracy: 0.5, latencyMs: { p50: 1, p95: 1, p99: 1 }, errors: 0, predictions: 1, ts: new Date() });

      assert.equal(await fleetA.repos.devices.revoke('osaka-1', new Date().toISOString()), true, 'revoked through A');
      assert.deepEqual((await forgetRevokedDevices(exporter, fleetB.repos.devices)).sort(), ['ghost-1', 'osaka-1']);
      const devices = (await registry.metrics()).split('\n').filter((line) => line.startsWith('fleetprune_device_')).map((line) => /device="([^"]+)"/.exec(line)![1]);
      assert.deepEqual([...new Set(devices)], ['kyoto-1'], 'only the live device keeps series');
      assert.deepEqual(await forgetRevokedDevices(exporter, fleetB.repos.devices), [], 'nothing more to forget');
    });
  });
}

