import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Registry } from 'prom-client';
import type { FleetStore } from '../../server/fleet/fleet-store.ts';
import { reportRetention } from '../../server/fleet/report-retention.ts';
import { restoreExports } from '../../server/fleet/serving-totals.ts';
import type { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import type { StoreLocation } from '../../server/store/open-store.ts';
import type { AssignmentReport, BenchmarkReport, ModelRef, Telemetry } from '../../shared/protocol/payloads.ts';
import { createLogger } from '../../shared/util/log.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { storeFleetServer } from './store-fleet-server.ts';

/*
 * What a server exports per device, and what a restart (or a standby elected) exports again from
 * the store: the same series with the same values, whatever retention deleted meanwhile.
 */

const DEVICE = 'osaka-1';
const ref = (version: string): ModelRef => ({ model: 'iris', version, sha256: version.repeat(64).slice(0, 64) });

function benchmark(id: string, createdAt: string, active: string | null, candidate: string, rows = 30): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string) => ({
    ...ref(version), role, score: { accuracy: version === '1' ? 0.8 : 0.9, correct: 27, total: 30 },
    latencyMs: { p50: 1, p95: 2, p99: 3, samples: rows }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return { schema: 1, id, kind: 'benchmark', deviceId: DEVICE, createdAt, assignmentId: null, holdout: { rows, fingerprint: 'f', task: 'classification' }, active: active === null ? null : model('active', active), candidate: model('candidate', candidate) };
}

function heartbeat(sentAt: string, active: string, candidate: string | null, serving?: { predictions: number; errors: number; shadowRows: number; shadowErrors: number }): Telemetry {
  return {
    schema: 1, deviceId: DEVICE, sentAt, uptimeSeconds: 100, cpuPercent: 1, rssBytes: 1e8, active: ref(active), candidate: candidate === null ? null : ref(candidate), previous: null,
    ...(serving ? { serving: { ...serving, shadowAgreements: serving.shadowRows } } : {}),
  };
}

// The versions the reports name, registered (the cap test's models m0 to m8 too).
const REGISTERED = [...['1', '2', '3'].map(ref), ...Array.from({ length: 9 }, (_, i) => ({ ...ref('1'), model: `m${i}` }))];
const serverOn = (t: TestContext, location: StoreLocation) => storeFleetServer(t, location, { registered: REGISTERED });

async function enroll(fleet: FleetStore): Promise<void> {
  await fleet.repos.devices.insert({ id: DEVICE, labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
}

/** An assignment issued to the device (a drop-candidate command, for a dropped candidate), and its answer (as the device sends it). */
async function answered(server: { fleet: FleetStore; ingest: StoreFleetIngest }, id: string, version: string, role: 'active' | 'candidate', outcome: AssignmentReport['outcome'], createdAt: string): Promise<void> {
  if (outcome === 'candidate-dropped') await server.fleet.repos.commands.insert({ id, deviceId: DEVICE, command: 'drop-candidate', issuedAt: '2026-03-01T08:30:00.000Z', issuedBy: 'rollout:ro-1' });
  else await server.fleet.repos.assignments.insert({ id, deviceId: DEVICE, model: 'iris', version, artifactId: ref(version).sha256, role, issuedAt: '2026-03-01T08:30:00.000Z', issuedBy: 'token:op', state: 'published', reason: null, updatedAt: '2026-03-01T08:30:00.000Z' });
  const answer: AssignmentReport = { schema: 1, id: `answer-${id}`, kind: 'assignment', deviceId: DEVICE, createdAt, assignmentId: id, outcome, role, model: 'iris', version, sha256: ref(version).sha256, reason: null };
  assert.equal(await server.ingest.ingestReport(answer), 'ingested');
}

/** The pilot as most tests start it: v1 activated, v2 installed as the candidate, and both benchmarked at 09:00. */
async function pilotBenchmarked(server: { fleet: FleetStore; ingest: StoreFleetIngest }): Promise<void> {
  await answered(server, 'assign-1', '1', 'active', 'activated', '2026-03-01T08:40:00.000Z');
  await answered(server, 'assign-2', '2', 'candidate', 'installed', '2026-03-01T08:50:00.000Z');
  assert.equal(await server.ingest.ingestReport(benchmark('b-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'ingested');
}

/** Every exported device sample, one line each (`name{labels} value`), sorted. */
async function deviceLines(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((line) => line.startsWith('fleetprune_device_')).sort();
}

/** A line with the value of a report time (the server's receipt of the report) left out. */
function withoutReceiptTimes(line: string): string {
  return line.startsWith('fleetprune_device_report_timestamp_seconds{') ? line.replace(/ \S+$/, ' <received>') : line;
}

/** The lines of one metric and role, as `version value`. */
function values(lines: readonly string[], metric: string, role: 'active' | 'candidate'): string[] {
  return lines.filter((line) => line.startsWith(`${metric}{`) && line.includes(`role="${role}"`)).map((line) => `${/version="([^"]*)"/.exec(line)![1]} ${line.split(' ').at(-1)}`);
}

/** A second server on the same store, after the first one stopped: what it exports once restored. */
async function restarted(t: TestContext, location: StoreLocation): Promise<Awaited<ReturnType<typeof serverOn>>> {
  const next = await serverOn(t, location);
  await restoreExports(next.exporter, next.fleet.repos);
  return next;
}

for (const engine of STORE_ENGINES) {
  describe(`device series across a restart on ${engine}`, () => {
    test('the counters add up every benchmark and every served row, and a restart exports the same values (never less: a counter reset)', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      // The candidate benchmarked twice (assigned again), and ran 100 rows in shadow, 10 of them failed.
      assert.equal(await first.ingest.ingestReport(benchmark('b-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'ingested');
      assert.equal(await first.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:01:00.000Z', '1', '2')), 'ingested');
      await first.ingest.recordTelemetry(heartbeat('2026-03-01T09:02:00.000Z', '1', '2', { predictions: 99, errors: 1, shadowRows: 90, shadowErrors: 10 }));
      const before = await deviceLines(first.registry);
      assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'candidate'), ['2 160'], 'two benchmarks of 30 rows and 100 shadow rows');
      assert.deepEqual(values(before, 'fleetprune_device_reports_total', 'candidate'), ['2 2']);
      await first.store.close();

      const second = await restarted(t, location);
      assert.deepEqual(await deviceLines(second.registry), before, 'the same series and values after the restart');
      // And the counters go on from there.
      assert.equal(await second.ingest.ingestReport(benchmark('b-3', '2026-03-01T09:03:00.000Z', '1', '2')), 'ingested');
      const after = await deviceLines(second.registry);
      assert.deepEqual(values(after, 'fleetprune_device_predictions_total', 'candidate'), ['2 190']);
      assert.deepEqual(values(after, 'fleetprune_device_reports_total', 'active'), ['1 3']);
      await second.store.close();
      assert.deepEqual(await deviceLines((await restarted(t, location)).registry), after, 'once more');
    });

    test('retention deleting every stored report leaves a live device its series after a restart, while it holds the models', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      await pilotBenchmarked(first);
      const before = await deviceLines(first.registry);
      assert.equal(before.filter((line) => line.startsWith('fleetprune_device_accuracy_ratio{')).length, 2, 'both models exported');
      // The reports are older than --report-retention-days by the time the sweep runs.
      const sweep = reportRetention(first.fleet.repos, { days: 90, everyMs: 3_600_000, log: createLogger('test', 'silent'), clock: () => new Date('2036-03-01T00:00:00.000Z') });
      assert.ok((await sweep.sweep()) > 0, 'the sweep deleted the reports');
      assert.equal(await first.fleet.repos.reports.count(), 0);
      await first.store.close();

      const second = await restarted(t, location);
      assert.deepEqual(await deviceLines(second.registry), before, 'the device still holds both models: their series stay');
    });

    test('a promoted model keeps its active series (the pilot\'s numbers and what it served since) after a restart', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      await pilotBenchmarked(first);
      await answered(first, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:10:00.000Z');
      await first.ingest.recordTelemetry(heartbeat('2026-03-01T09:11:00.000Z', '2', null, { predictions: 70, errors: 0, shadowRows: 0, shadowErrors: 0 }));
      const before = await deviceLines(first.registry);
      assert.deepEqual(values(before, 'fleetprune_device_accuracy_ratio', 'active'), ['2 0.9'], 'the promotion copied the pilot\'s accuracy');
      assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'active'), ['2 70']);
      await first.store.close();

      const second = await restarted(t, location);
      assert.deepEqual(await deviceLines(second.registry), before, 'every series of the promoted model, with the same values');
    });

    test('a heartbeat without the candidate drops its series (no answer said so); one sent before the benchmark, read late, does not', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      await pilotBenchmarked(first);
      const candidateSeries = async (registry: Registry) => values(await deviceLines(registry), 'fleetprune_device_accuracy_ratio', 'candidate');

      // Sent before the candidate was installed and benchmarked, read only now: older than what the server knows.
      assert.equal(await first.ingest.recordTelemetry(heartbeat('2026-03-01T08:45:00.000Z', '1', null)), 'recorded');
      assert.deepEqual(await candidateSeries(first.registry), ['2 0.9'], 'a late heartbeat moves nothing');

      // The agent restarted, found the candidate's files damaged and dropped it: its heartbeats show no candidate.
      assert.equal(await first.ingest.recordTelemetry(heartbeat('2026-03-01T09:30:00.000Z', '1', null)), 'recorded');
      assert.deepEqual(await candidateSeries(first.registry), [], 'the dropped candidate is not exported');
      assert.deepEqual(values(await deviceLines(first.registry), 'fleetprune_device_accuracy_ratio', 'active'), ['1 0.8'], 'the active model stays');
      await first.store.close();
      const second = await restarted(t, location);
      assert.deepEqual(await deviceLines(second.registry), await deviceLines(first.registry), 'a restart exports the same');
      // Installed and benchmarked again: its counters start afresh, live and after a restart alike.
      await answered(second, 'assign-4', '2', 'candidate', 'installed', '2026-03-01T09:40:00.000Z');
      assert.equal(await second.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:45:00.000Z', '1', '2')), 'ingested');
      const live = await deviceLines(second.registry);
      assert.deepEqual(values(live, 'fleetprune_device_reports_total', 'candidate'), ['2 1']);
      await second.store.close();
      assert.deepEqual(await deviceLines((await restarted(t, location)).registry), live);
    });

    test('a heartbeat sent before the benchmark, read late, leaves the candidate series after a restart too, and its counters go on from there (never back)', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      await pilotBenchmarked(first);
      // Sent before the candidate was installed, read after its benchmark: it stores stale slots (no candidate).
      assert.equal(await first.ingest.recordTelemetry(heartbeat('2026-03-01T08:45:00.000Z', '1', null)), 'recorded');
      const before = await deviceLines(first.registry);
      assert.deepEqual(values(before, 'fleetprune_device_reports_total', 'candidate'), ['2 1'], 'live, the late heartbeat moves nothing');
      await first.store.close();

      const second = await restarted(t, location);
      assert.deepEqual(await deviceLines(second.registry), before, 'a restart exports the same');
      // The device goes on with the candidate in shadow: 10 rows.
      assert.equal(await second.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:05:00.000Z', '1', '2', { predictions: 10, errors: 0, shadowRows: 10, shadowErrors: 0 }), uptimeSeconds: 200 }), 'recorded');
      const live = await deviceLines(second.registry);
      assert.deepEqual(values(live, 'fleetprune_device_predictions_total', 'candidate'), ['2 40'], 'the benchmark\'s 30 rows and 10 in shadow');
      await second.store.close();
      assert.deepEqual(await deviceLines((await restarted(t, location)).registry), live, 'once more: 40, not the stored 30 counted again');
    });

    test('served rows of a series a late heartbeat leaves (measured after it was sent) stay with it across a restart', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const first = await serverOn(t, location);
      await enroll(first.fleet);
      await pilotBenchmarked(first);
      assert.equal(await first.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:02:00.000Z', '1', '2', { predictions: 0, errors: 0, shadowRows: 10, shadowErrors: 1 }), runId: 'r2' }), 'recorded');
      // A heartbeat of the agent's previous run, sent before the candidate came, delivered only now.
      assert.equal(await first.ingest.recordTelemetry({ ...heartbeat('2026-03-01T08:45:00.000Z', '1', null), runId: 'r1' }), 'recorded');
      const before = await deviceLines(first.registry);
      assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'candidate'), ['2 41'], 'live, the candidate keeps its benchmark and shadow rows');
      await first.store.close();
      assert.deepEqual(await deviceLines((await restarted(t, location)).registry), before, 'a restart exports the same');
    });

    test('a promoted model\'s active series keeps its promotion\'s time across a restart: a heartbeat sent before the promotion, read late, leaves it, as live', async (t) => {
      const exported: string[][] = [];
      for (const restart of [true, false]) {
        const location = await freshStoreLocation(t, engine);
        if (!location) return;
        let server = await serverOn(t, location);
        await enroll(server.fleet);
        await answered(server, 'assign-1', '1', 'active', 'activated', '2026-03-01T08:40:00.000Z');
        await answered(server, 'assign-2', '2', 'candidate', 'installed', '2026-03-01T08:50:00.000Z');
        assert.equal(await server.ingest.ingestReport(benchmark('b-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'ingested');
        assert.equal(await server.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:01:00.000Z', '1', '2'), runId: 'r1' }), 'recorded');
        await answered(server, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:10:00.000Z');
        if (restart) {
          const before = await deviceLines(server.registry);
          await server.store.close();
          server = await restarted(t, location);
          assert.deepEqual(await deviceLines(server.registry), before, 'a restart exports the same');
        }
        // Sent at 09:05 (before the promotion at 09:10), read only now.
        assert.equal(await server.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:05:00.000Z', '1', '2'), uptimeSeconds: 400, runId: 'r1' }), 'recorded');
        const lines = await deviceLines(server.registry);
        assert.deepEqual(values(lines, 'fleetprune_device_accuracy_ratio', 'active'), ['2 0.9'], `the promoted model keeps its active series (restart: ${restart})`);
        exported.push(lines);
        await server.store.close();
        assert.deepEqual(await deviceLines((await restarted(t, location)).registry), lines, `a restart after the late heartbeat exports the same (restart: ${restart})`);
      }
      // The two servers received the same reports at other times: the report times' values differ (within a server, a restart keeps them: above).
      assert.deepEqual(exported[1]!.map(withoutReceiptTimes), exported[0]!.map(withoutReceiptTimes), 'with a restart in between, the same as without');
    });
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: a device benchmarked before the store kept benchmark totals (fleet:10) goes on from what a restart restored for it (its latest benchmark)`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    assert.equal(await first.ingest.ingestReport(benchmark('b-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'ingested');
    assert.equal(await first.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:01:00.000Z', '1', '2')), 'ingested');
    await first.ingest.recordTelemetry(heartbeat('2026-03-01T09:01:30.000Z', '1', '2'));
    // As fleet migration 10 leaves a device: no totals kept.
    await first.store.engine.run('UPDATE devices SET report_totals = NULL');
    await first.store.close();
    const second = await restarted(t, location);
    const restored = await deviceLines(second.registry);
    assert.deepEqual(values(restored, 'fleetprune_device_reports_total', 'candidate'), ['2 1'], 'the latest benchmark, as before');
    assert.equal(await second.ingest.ingestReport(benchmark('b-3', '2026-03-01T09:02:00.000Z', '1', '2')), 'ingested');
    const live = await deviceLines(second.registry);
    assert.deepEqual(values(live, 'fleetprune_device_reports_total', 'candidate'), ['2 2']);
    await second.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), live, 'not less after the next restart');
    // No restart in between: the first benchmark stored after the migration starts from the latest one before it.
    const fourth = await serverOn(t, location);
    await fourth.store.engine.run('UPDATE devices SET report_totals = NULL');
    assert.equal(await fourth.ingest.ingestReport(benchmark('b-4', '2026-03-01T09:03:00.000Z', '1', '2')), 'ingested');
    assert.deepEqual((await fourth.fleet.repos.devices.get(DEVICE))!.reportTotals!.map((total) => `${total.role} ${total.reports} ${total.predictions}`).sort(), ['active 2 60', 'candidate 2 60']);
    // Totals that are not well-formed (hand-edited) are left out, never a failed read.
    const third = await serverOn(t, location);
    await third.store.engine.run(`UPDATE devices SET report_totals = '[{"model":"iris","version":"9","role":"candidate","cohort":"x","predictions":-1}, 7]'`);
    assert.deepEqual((await third.fleet.repos.devices.get(DEVICE))!.reportTotals, []);
    await third.store.engine.run(`UPDATE devices SET report_totals = 'not json'`);
    assert.deepEqual((await third.fleet.repos.devices.get(DEVICE))!.reportTotals, []);
    await restoreExports(third.exporter, third.fleet.repos);
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: a device from before fleet:10 whose stored slots come from a heartbeat sent before its latest benchmark keeps that benchmark's counters across a restart, and an answer after that seeds its totals`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    await pilotBenchmarked(first);
    await first.store.engine.run('UPDATE devices SET report_totals = NULL');
    // Sent before the benchmark, read after it: the stored slots (no candidate) are older than the benchmark.
    await first.ingest.recordTelemetry(heartbeat('2026-03-01T08:55:00.000Z', '1', null));
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'candidate'), ['2 30'], 'live keeps the candidate series (benchmarked after the heartbeat was sent)');
    await first.store.close();

    const second = await restarted(t, location);
    assert.deepEqual(await deviceLines(second.registry), before, 'the same series and values after the restart');
    assert.equal(await second.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:05:00.000Z', '1', '2')), 'ingested');
    const live = await deviceLines(second.registry);
    assert.deepEqual(values(live, 'fleetprune_device_predictions_total', 'candidate'), ['2 60']);
    await second.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), live, 'not less after the next restart');

    // An answer dropping the candidate, read with no totals stored: the store keeps that the series went.
    const migrated = await serverOn(t, location);
    await migrated.store.engine.run('UPDATE devices SET report_totals = NULL');
    await migrated.store.close();
    const third = await restarted(t, location);
    assert.deepEqual(values(await deviceLines(third.registry), 'fleetprune_device_predictions_total', 'candidate'), ['2 30'], 'seeded from the latest benchmark');
    await third.store.engine.run('UPDATE devices SET report_totals = NULL');
    await answered(third, 'assign-3', '2', 'candidate', 'candidate-dropped', '2026-03-01T09:10:00.000Z');
    const dropped = await deviceLines(third.registry);
    assert.deepEqual(values(dropped, 'fleetprune_device_predictions_total', 'candidate'), [], 'the dropped candidate has no series live');
    await third.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), dropped, 'nor after a restart');
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: an answer that removes a series drops its served totals too: a rollback before any heartbeat does not bring the old served rows back after a restart`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    await answered(first, 'assign-1', '1', 'active', 'activated', '2026-03-01T08:40:00.000Z');
    await first.ingest.recordTelemetry({ ...heartbeat('2026-03-01T08:45:00.000Z', '1', null, { predictions: 50, errors: 2, shadowRows: 0, shadowErrors: 0 }), runId: 'r1' });
    await answered(first, 'assign-2', '2', 'candidate', 'installed', '2026-03-01T08:50:00.000Z');
    assert.equal(await first.ingest.ingestReport(benchmark('b-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'ingested');
    // A heartbeat that read the device before the promotion is stored after it: it must not write back what the answer dropped.
    const read = (await first.fleet.repos.devices.get(DEVICE))!;
    assert.equal(read.servingTotals.length, 1, 'served before the promotion');
    await answered(first, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:10:00.000Z');
    await answered(first, 'assign-4', '1', 'active', 'rolled-back', '2026-03-01T09:11:00.000Z');
    assert.equal((await first.fleet.repos.devices.get(DEVICE))!.servingTotals.length, 0, 'the rollback leaves no served totals of the removed series');
    const stale = { ...heartbeat('2026-03-01T09:12:00.000Z', '1', null, { predictions: 50, errors: 2, shadowRows: 0, shadowErrors: 0 }), runId: 'r1' };
    assert.equal(await first.fleet.repos.devices.recordTelemetry(stale, '2026-03-01T09:12:00.000Z', { totals: read.servingTotals, after: read }), false, 'written over served totals it did not read');
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'active'), [], 'live: the series went with the promotion, the rollback made none');
    await first.store.close();

    const second = await restarted(t, location);
    assert.deepEqual(await deviceLines(second.registry), before, 'the same series after the restart');
    await second.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:12:00.000Z', '1', null, { predictions: 60, errors: 2, shadowRows: 0, shadowErrors: 0 }), runId: 'r1', uptimeSeconds: 200 });
    assert.deepEqual(values(await deviceLines(second.registry), 'fleetprune_device_predictions_total', 'active'), ['1 10'], 'what the agent served since, as live');
  });

  test(`${engine}: a candidate replaced and installed again before a heartbeat counts afresh after a restart, as live`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    await pilotBenchmarked(first);
    await first.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:01:00.000Z', '1', '2', { predictions: 60, errors: 2, shadowRows: 10, shadowErrors: 1 }), runId: 'r1' });
    await answered(first, 'assign-3', '3', 'candidate', 'installed', '2026-03-01T09:10:00.000Z');
    await answered(first, 'assign-4', '2', 'candidate', 'installed', '2026-03-01T09:11:00.000Z');
    assert.equal(await first.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:12:00.000Z', '1', '2')), 'ingested');
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_predictions_total', 'candidate'), ['2 30'], 'live: the second benchmark alone');
    await first.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), before, 'the same series and values after the restart');
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: served rows of a heartbeat read late do not replace the label sets benchmarked or promoted after it was sent, live or after a restart`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    const beat = (sentAt: string, active: string, candidate: string, predictions: number, shadowRows: number, uptimeSeconds: number) =>
      first.ingest.recordTelemetry({ ...heartbeat(sentAt, active, candidate, { predictions, errors: 0, shadowRows, shadowErrors: 1 }), runId: 'r1', uptimeSeconds });
    await pilotBenchmarked(first);
    await beat('2026-03-01T09:01:00.000Z', '1', '2', 10, 4, 100);
    await answered(first, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:02:00.000Z');
    await answered(first, 'assign-4', '3', 'candidate', 'installed', '2026-03-01T09:03:00.000Z');
    assert.equal(await first.ingest.ingestReport(benchmark('b-2', '2026-03-01T09:04:00.000Z', '2', '3')), 'ingested');
    // Sent before the promotion and the new candidate's benchmark, read after them.
    assert.equal(await beat('2026-03-01T09:01:30.000Z', '1', '2', 12, 5, 150), 'recorded');
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_reports_total', 'active'), ['2 1'], 'the promoted model keeps its active series');
    assert.deepEqual(values(before, 'fleetprune_device_reports_total', 'candidate'), ['3 1'], 'the new candidate keeps its series');
    await first.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), before, 'the same series and values after the restart');
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: the model cap evicts by benchmark alone (served rows make no model recent), live and after a restart alike`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    const of = (model: string, report: BenchmarkReport): BenchmarkReport => ({ ...report, candidate: { ...report.candidate, model } });
    for (let i = 0; i < 8; i++) assert.equal(await first.ingest.ingestReport(of(`m${i}`, benchmark(`b-${i}`, `2026-03-01T09:1${i}:00.000Z`, null, '1'))), 'ingested');
    // The oldest model ran rows in shadow (the heartbeat was sent before the benchmarks, read after them).
    const beat = heartbeat('2026-03-01T09:05:00.000Z', '1', null, { predictions: 0, errors: 0, shadowRows: 10, shadowErrors: 0 });
    assert.equal(await first.ingest.recordTelemetry({ ...beat, active: null, candidate: { ...ref('1'), model: 'm0' } }), 'recorded');
    assert.equal(await first.ingest.ingestReport(of('m8', benchmark('b-8', '2026-03-01T09:20:00.000Z', null, '1'))), 'ingested');
    const before = await deviceLines(first.registry);
    const models = [...new Set(before.map((line) => /model="([^"]*)"/.exec(line)![1]))].sort();
    assert.deepEqual(models, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8'], 'the least recently benchmarked model went, served rows and all');
    await first.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), before, 'the same series and values after the restart');
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: a heartbeat showing a promotion read before its answer makes no active copy, live or after a restart; the answer makes it on both`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    await pilotBenchmarked(first);
    assert.equal(await first.ingest.recordTelemetry({ ...heartbeat('2026-03-01T09:03:00.000Z', '2', null, { predictions: 10, errors: 0, shadowRows: 0, shadowErrors: 0 }), runId: 'r1' }), 'recorded');
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_reports_total', 'active'), [], 'no copy live: the answer has not come');
    await first.store.close();
    const second = await restarted(t, location);
    assert.deepEqual(await deviceLines(second.registry), before, 'the same series after the restart');
    await answered(second, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:02:00.000Z');
    const promoted = await deviceLines(second.registry);
    assert.deepEqual(values(promoted, 'fleetprune_device_accuracy_ratio', 'active'), ['2 0.9'], 'the answer makes the copy');
    await second.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), promoted, 'kept across the next restart');
  });

  test(`${engine}: a device from before fleet:10 whose candidate was promoted keeps the active copy a restart made for it (seeded with its totals)`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const first = await serverOn(t, location);
    await enroll(first.fleet);
    await pilotBenchmarked(first);
    await answered(first, 'assign-3', '2', 'active', 'activated', '2026-03-01T09:02:00.000Z');
    const before = await deviceLines(first.registry);
    assert.deepEqual(values(before, 'fleetprune_device_accuracy_ratio', 'active'), ['2 0.9']);
    await first.store.engine.run('UPDATE devices SET report_totals = NULL');
    await first.store.close();
    const second = await restarted(t, location);
    assert.deepEqual(values(await deviceLines(second.registry), 'fleetprune_device_accuracy_ratio', 'active'), ['2 0.9'], 'the copy, from the candidate\'s benchmark');
    const restored = await deviceLines(second.registry);
    await second.store.close();
    assert.deepEqual(await deviceLines((await restarted(t, location)).registry), restored, 'and again from the seeded totals');
  });
}
