import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreCredentialStore } from '../../server/fleet/store-credential-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { reportRetention } from '../../server/fleet/report-retention.ts';
import { StoreReportHistory } from '../../server/fleet/store-report-history.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { openStore } from '../../server/store/open-store.ts';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { runMigrations } from '../../server/store/migrations/run-migrations.ts';
import { FleetSequencesRepository } from '../../server/store/repositories/fleet-sequences-repository.ts';
import { Counter, Registry } from 'prom-client';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { deviceReportsFromBenchmark } from '../../server/metricproviders/benchmark-report-adapter.ts';
import type { Store } from '../../server/store/store.ts';
import type { AssignmentReport, BenchmarkReport, ModelRef, Report } from '../../shared/protocol/payloads.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { registerVersions } from '../helpers/registered-versions.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import type { Broker } from '../../server/broker/broker.ts';
import { reportsTopic } from '../../shared/protocol/topics.ts';

const ref = (version: string): ModelRef => ({ model: 'iris', version, sha256: version.repeat(64).slice(0, 64) });

function benchmark(id: string, deviceId: string, createdAt: string, active: string | null, candidate: string): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string, accuracy: number) => ({
    ...ref(version), role, score: { accuracy, correct: Math.round(accuracy * 30), total: 30 },
    latencyMs: { p50: 0.1, p95: 0.2, p99: 0.3, samples: 50 }, batchSize: 64, throughputRowsPerSecond: 1000, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return {
    schema: 1, id, kind: 'benchmark', deviceId, createdAt, assignmentId: null,
    holdout: { rows: 30, fingerprint: 'f', task: 'classification' },
    active: active === null ? null : model('active', active, 0.9), candidate: model('candidate', candidate, 0.93),
  };
}

function answer(id: string, deviceId: string, assignmentId: string, outcome: AssignmentReport['outcome'], version: string, role: 'active' | 'candidate'): AssignmentReport {
  return { schema: 1, id, kind: 'assignment', deviceId, createdAt: '2026-03-01T09:00:00.000Z', assignmentId, outcome, role, ...ref(version), reason: outcome === 'refused' ? 'nope' : null };
}

for (const engine of STORE_ENGINES) {
  describe(`fleet store on ${engine}`, () => {
    async function withFleet(t: TestContext, work: (fleet: FleetStore, store: Store) => Promise<void>): Promise<void> {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      try {
        // The versions the reports below name, registered (the ingest takes benchmarks of registered versions only).
        await registerVersions(store, ['1', '2', '3', '4', '5', '6', '7', '8', '9'].map(ref));
        await work(new FleetStore(store), store);
      } finally {
        await store.close();
      }
    }

    async function enroll(fleet: FleetStore, id: string, labels: Record<string, string>) {
      await fleet.repos.devices.insert({ id, labels, secretHash: `$7$101$c2FsdA==$${id}`, tokenId: `tok-${id}`, enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
    }

    test('devices: enroll, credentials, revoke; the id is the primary key', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', { site: 'osaka', cohort: 'pilot' });
        await enroll(fleet, 'kyoto-1', { site: 'kyoto' });
        await assert.rejects(enroll(fleet, 'osaka-1', {}), /UniqueViolation|unique|duplicate/i);
        const credentials = new StoreCredentialStore(fleet);
        assert.deepEqual(await credentials.getDevice('osaka-1'), { deviceId: 'osaka-1', passwordHash: '$7$101$c2FsdA==$osaka-1', revoked: false });
        assert.equal(await credentials.getDevice('nobody'), undefined);
        assert.equal(await fleet.repos.devices.revoke('kyoto-1', '2026-03-01T09:00:00.000Z'), true);
        assert.equal(await fleet.repos.devices.revoke('kyoto-1', '2026-03-01T09:00:00.000Z'), false);
        assert.deepEqual((await credentials.listDevices()).map((device) => [device.deviceId, device.revoked]), [['kyoto-1', true], ['osaka-1', false]]);
        assert.deepEqual((await fleet.repos.devices.list({ live: true })).map((device) => device.id), ['osaka-1']);
        const device = (await fleet.repos.devices.get('osaka-1'))!;
        assert.deepEqual([device.labels, device.online, device.active, device.heartbeat, device.retainedAssignment], [{ site: 'osaka', cohort: 'pilot' }, false, null, null, null]);
      });
    });

    test('devices and their first answers are read for many ids at once, across query chunks', async (t) => {
      await withFleet(t, async (fleet) => {
        const ids = Array.from({ length: 1200 }, (_, i) => `dev-${String(i).padStart(4, '0')}`);
        await fleet.transaction(async (tx) => {
          for (const id of ids) await tx.devices.insert({ id, labels: { n: id }, secretHash: 'x', tokenId: `tok-${id}`, enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'test' });
        });
        const found = await fleet.repos.devices.getMany([...ids, 'nobody', ids[0]!]);
        assert.equal(found.size, 1200, 'every enrolled id (three chunks of 500), nothing for an unknown one');
        assert.deepEqual(found.get('dev-1199')!.labels, { n: 'dev-1199' });
        assert.equal(found.has('nobody'), false);

        // Two answers from dev-0000 (the first one counts), one from dev-0999, one to another assignment.
        const at = (second: number) => `2026-03-01T09:00:${String(second).padStart(2, '0')}.000Z`;
        await fleet.repos.reports.insert({ ...answer('a-1', 'dev-0000', 'assign-1', 'installed', '2', 'candidate'), createdAt: at(1) }, 'none', at(1));
        await fleet.repos.reports.insert({ ...answer('a-2', 'dev-0000', 'assign-1', 'refused', '2', 'candidate'), createdAt: at(2) }, 'none', at(2));
        await fleet.repos.reports.insert({ ...answer('a-3', 'dev-0999', 'assign-1', 'installed', '2', 'candidate'), createdAt: at(3) }, 'none', at(3));
        await fleet.repos.reports.insert({ ...answer('a-4', 'dev-0500', 'assign-2', 'installed', '2', 'candidate'), createdAt: at(4) }, 'none', at(4));
        const answers = await fleet.repos.reports.findAnswers('assign-1', ids);
        assert.deepEqual([...answers].map(([id, report]) => [id, report.outcome]).sort(), [['dev-0000', 'installed'], ['dev-0999', 'installed']]);
        for (const id of ['dev-0000', 'dev-0999', 'dev-0500']) {
          assert.deepEqual(answers.get(id)?.id, (await fleet.repos.reports.findAnswer('assign-1', id))?.id, `${id}: as findAnswer reads it`);
        }
      });
    });

    test('status and telemetry update online state, slots and heartbeat; start-up marks everyone offline', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', {});
        const served: string[] = [];
        const ingest = new StoreFleetIngest({
          fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(),
          onServing: (s) => served.push(`${s.deviceId} ${s.active?.version}:${s.predictions}/${s.errors} ${s.candidate?.version}:${s.shadowRows}/${s.shadowErrors}`),
        });
        await ingest.recordStatus({ schema: 1, deviceId: 'osaka-1', online: true, since: '2026-03-01T08:59:00.000Z' });
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.online, true);
        await ingest.recordTelemetry({
          schema: 1, deviceId: 'osaka-1', sentAt: '2026-03-01T09:00:30Z', uptimeSeconds: 31.5, cpuPercent: 2.5, rssBytes: 1e8,
          active: ref('1'), candidate: ref('2'), previous: null, serving: { predictions: 10, errors: 0, shadowRows: 2, shadowAgreements: 2 },
        });
        const device = (await fleet.repos.devices.get('osaka-1'))!;
        assert.deepEqual([device.active?.version, device.candidate?.version, device.previous], ['1', '2', null]);
        assert.deepEqual(device.heartbeat, { at: '2026-03-01T09:00:30.000Z', uptimeSeconds: 31.5, cpuPercent: 2.5, rssBytes: 1e8, serving: { predictions: 10, errors: 0, shadowRows: 2, shadowAgreements: 2 } });
        assert.deepEqual(await fleet.repos.devices.count(), { enrolled: 1, online: 1, revoked: 0 });
        // What it served since: the difference of its counters (the first heartbeat counts whole); after a restart (uptime down), all again.
        const beat = (uptimeSeconds: number, predictions: number, shadowRows: number, shadowErrors: number) =>
          ingest.recordTelemetry({ schema: 1, deviceId: 'osaka-1', sentAt: '2026-03-01T09:01:00Z', uptimeSeconds, cpuPercent: 1, rssBytes: 1e8, active: ref('1'), candidate: ref('2'), previous: null, serving: { predictions, errors: 0, shadowRows, shadowAgreements: 0, shadowErrors } });
        await beat(61.5, 25, 8, 1);
        await beat(91.5, 25, 8, 1);
        await beat(3, 4, 0, 0);
        assert.deepEqual(served, ['osaka-1 1:10/0 2:2/0', 'osaka-1 1:15/0 2:6/1', 'osaka-1 1:4/0 2:0/0']);
        await fleet.repos.devices.markAllOffline();
        assert.deepEqual(await fleet.repos.devices.count(), { enrolled: 1, online: 0, revoked: 0 });
        await ingest.recordStatus({ schema: 1, deviceId: 'osaka-1', online: false, since: '2026-03-01T08:59:00.000Z' });
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.online, false);
      });
    });

    test('reports: a report id is ingested once; answers update the assignment and the slots', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', { cohort: 'pilot' });
        const exported: DeviceReport[] = [];
        const outcomes = new AssignmentOutcomes();
        const failedBenchmarks: string[] = [];
        const slotChanges: string[] = [];
        const ingest = new StoreFleetIngest({
          fleet, cohortLabel: 'cohort', outcomes,
          onBenchmark: (reports) => exported.push(...reports),
          onBenchmarkFailed: (r) => failedBenchmarks.push(`${r.deviceId} ${r.assignmentId}`),
          onSlotsChanged: (deviceId, slots) => slotChanges.push(`${deviceId} active=${slots.active?.version ?? '-'} candidate=${slots.candidate?.version ?? '-'}`),
        });
        const issue = (id: string, version: string, role: 'active' | 'candidate') =>
          fleet.repos.assignments.insert({
            id, deviceId: 'osaka-1', model: 'iris', version, artifactId: ref(version).sha256, role,
            issuedAt: '2026-03-01T08:59:00.000Z', issuedBy: 'token:op', state: 'published', reason: null, updatedAt: '2026-03-01T08:59:00.000Z',
          });
        await issue('assign-0001', '2', 'candidate');
        const waited = outcomes.waitFor('assign-0001', 'osaka-1', 5000);
        assert.equal(await ingest.ingestReport(answer('answer-0001', 'osaka-1', 'assign-0001', 'installed', '2', 'candidate')), 'ingested');
        assert.deepEqual(await waited.promise, { outcome: 'installed', reason: null });
        assert.equal(await ingest.ingestReport(answer('answer-0001', 'osaka-1', 'assign-0001', 'installed', '2', 'candidate')), 'duplicate');
        assert.equal((await fleet.repos.assignments.get('assign-0001', 'osaka-1'))!.state, 'installed');
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.candidate?.version, '2');

        // Another device sends its report under the id osaka-1 will use (ids are built from
        // assignment ids other devices see): it is its own report, and takes nothing from osaka-1's.
        await enroll(fleet, 'kyoto-1', { cohort: 'pilot' });
        assert.equal(await ingest.ingestReport(benchmark('bench-0001', 'kyoto-1', '2026-03-01T09:00:04Z', '1', '2')), 'ingested');
        exported.length = 0;
        const report = benchmark('bench-0001', 'osaka-1', '2026-03-01T09:00:05Z', '1', '2');
        assert.equal(await ingest.ingestReport(report), 'ingested');
        assert.equal(await ingest.ingestReport(report), 'duplicate');
        assert.deepEqual(exported.map((r) => [r.deviceId, r.role, r.version, r.cohort]), [['osaka-1', 'active', '1', 'pilot'], ['osaka-1', 'candidate', '2', 'pilot']]);
        // Timed by the server's receipt as well as the device's clock (the report-time gauge takes the receipt).
        const stored = (await fleet.repos.reports.latestBenchmarks({ deviceId: 'osaka-1' }))[0]!;
        assert.deepEqual(exported.map((r) => r.receivedAt?.toISOString()), [stored.receivedAt, stored.receivedAt], 'the time the report was stored with');
        assert.equal(await fleet.repos.reports.count(), 3);
        // A later benchmark-failed answer to the same assignment is passed on (for its rollout), once.
        const failure = answer('answer-0001b', 'osaka-1', 'assign-0001', 'benchmark-failed', '2', 'candidate');
        assert.equal(await ingest.ingestReport(failure), 'ingested');
        assert.equal(await ingest.ingestReport(failure), 'duplicate');
        assert.deepEqual(failedBenchmarks, ['osaka-1 assign-0001']);

        // Activating the candidate: it leaves the candidate slot, the old active becomes previous.
        await issue('assign-0002', '2', 'active');
        assert.equal(await ingest.ingestReport(answer('answer-0002', 'osaka-1', 'assign-0002', 'activated', '2', 'active')), 'ingested');
        const device = (await fleet.repos.devices.get('osaka-1'))!;
        assert.deepEqual([device.active?.version, device.candidate, device.previous], ['2', null, null]);
        // The exported series follow each change of slots (a duplicate answer changes nothing).
        assert.deepEqual(slotChanges, ['osaka-1 active=- candidate=2', 'osaka-1 active=2 candidate=-']);
        assert.equal((await fleet.repos.reports.findAnswer('assign-0001', 'osaka-1'))?.outcome, 'installed');
        assert.equal(await fleet.repos.reports.findAnswer('assign-0003', 'osaka-1'), undefined);
      });
    });

    test('superseded assignments: retention deletes old ones; the migration marks those left published before, but not a device\'s newest or retained one', async (t) => {
      await withFleet(t, async (fleet, store) => {
        const now = new Date('2026-06-01T12:00:00.000Z');
        const daysAgo = (days: number) => new Date(now.getTime() - days * 86_400_000).toISOString();
        await enroll(fleet, 'osaka-1', {});
        await enroll(fleet, 'kyoto-1', {});
        const issue = (id: string, deviceId: string, days: number) =>
          fleet.repos.assignments.insert({
            id, deviceId, model: 'iris', version: '1', artifactId: ref('1').sha256, role: 'active',
            issuedAt: daysAgo(days), issuedBy: 'token:op', state: 'published', reason: null, updatedAt: daysAgo(days),
          });
        // What the code before `superseded` left: every unanswered assignment published.
        await issue('osaka-a', 'osaka-1', 40);
        await issue('osaka-b', 'osaka-1', 35);
        await issue('osaka-c', 'osaka-1', 33);
        await issue('kyoto-a', 'kyoto-1', 40);
        await issue('kyoto-b', 'kyoto-1', 35);
        // kyoto-1 holds its older one retained (a newer one was recorded for it but never sent).
        await fleet.repos.devices.setRetainedAssignment('kyoto-1', { schema: 1, id: 'kyoto-a', model: 'iris', version: '1', role: 'active', sha256: ref('1').sha256, url: 'http://x/m', issuedAt: daysAgo(40), seq: 1 } as never);
        await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'fleet' AND version = 9");
        assert.deepEqual((await runMigrations(store.engine, ALL_MIGRATIONS)).map((m) => `${m.domain}:${m.version}`), ['fleet:9']);
        const states = async () => (await store.engine.all('SELECT id, state FROM device_assignments ORDER BY id')).map((row) => `${row.id} ${row.state}`);
        assert.deepEqual(await states(), ['kyoto-a published', 'kyoto-b published', 'osaka-a superseded', 'osaka-b superseded', 'osaka-c published']);

        // Superseded as the server records a newer one: only the device's own unanswered ones.
        await issue('osaka-d', 'osaka-1', 20);
        assert.equal(await fleet.repos.assignments.supersedeUnanswered('osaka-1', 'osaka-d', daysAgo(20)), 1);
        assert.equal((await fleet.repos.assignments.get('osaka-c', 'osaka-1'))?.reason, 'replaced by assignment osaka-d before the device answered');
        const log = { info: () => undefined, warn: () => undefined } as unknown as Logger;
        await reportRetention(fleet.repos, { days: 30, everyMs: 3_600_000, log, clock: () => now }).sweep();
        assert.deepEqual(await states(), ['kyoto-a published', 'kyoto-b published', 'osaka-d published']);
      });
    });

    test('retention: a sweep deletes the reports, answered assignments and commands from before --report-retention-days, and only those', async (t) => {
      await withFleet(t, async (fleet, store) => {
        const now = new Date('2026-06-01T12:00:00.000Z');
        const daysAgo = (days: number) => new Date(now.getTime() - days * 86_400_000).toISOString();
        await enroll(fleet, 'osaka-1', {});
        const issue = (id: string, days: number, state: 'published' | 'activated') =>
          fleet.repos.assignments.insert({
            id, deviceId: 'osaka-1', model: 'iris', version: '1', artifactId: ref('1').sha256, role: 'active',
            issuedAt: daysAgo(days), issuedBy: 'token:op', state, reason: null, updatedAt: daysAgo(days),
          });
        await issue('assign-answered-old', 31, 'activated');
        await issue('assign-unanswered-old', 31, 'published'); // its device has been offline since: it may still answer
        await issue('assign-answered-new', 29, 'activated');
        await issue('assign-retained-old', 32, 'activated'); // what the device holds retained: republished at every start
        const retained = (await fleet.repos.assignments.get('assign-retained-old', 'osaka-1'))!;
        await fleet.repos.devices.setRetainedAssignment('osaka-1', { schema: 1, id: retained.id, model: 'iris', version: '1', role: 'active', sha256: retained.artifactId, url: 'http://x/m', issuedAt: retained.issuedAt, seq: 1 } as never);
        for (const [id, days] of [['command-old', 31], ['command-new', 29], ['command-unanswered-old', 31]] as const) {
          await fleet.repos.commands.insert({ id, deviceId: 'osaka-1', command: 'drop-candidate', issuedAt: daysAgo(days), issuedBy: 'system:rollout' });
        }
        await fleet.repos.commands.setAnswered('command-old', 'osaka-1', daysAgo(31));
        await fleet.repos.commands.setAnswered('command-new', 'osaka-1', daysAgo(29));
        // A revoked device answers nothing any more: its old records go, answered or not.
        await enroll(fleet, 'gone-1', {});
        await fleet.repos.assignments.insert({
          id: 'assign-gone-old', deviceId: 'gone-1', model: 'iris', version: '1', artifactId: ref('1').sha256, role: 'active',
          issuedAt: daysAgo(31), issuedBy: 'token:op', state: 'published', reason: null, updatedAt: daysAgo(31),
        });
        await fleet.repos.commands.insert({ id: 'command-gone-old', deviceId: 'gone-1', command: 'drop-candidate', issuedAt: daysAgo(31), issuedBy: 'system:rollout' });
        await fleet.repos.devices.revoke('gone-1', daysAgo(30));
        await fleet.repos.reports.insert(benchmark('bench-old', 'osaka-1', daysAgo(40), '1', '2'), 'pilot', daysAgo(31));
        await fleet.repos.reports.insert(answer('answer-old', 'osaka-1', 'assign-0001', 'installed', '2', 'candidate'), 'pilot', daysAgo(30.5));
        // Arrival time decides, not the device's clock: an old createdAt that arrived recently is kept.
        await fleet.repos.reports.insert(benchmark('bench-late', 'osaka-1', daysAgo(45), '1', '2'), 'pilot', daysAgo(1));
        await fleet.repos.reports.insert(benchmark('bench-new', 'osaka-1', daysAgo(0), '1', '2'), 'pilot', daysAgo(0));
        const logged: string[] = [];
        const log = { info: (_: unknown, message: string) => logged.push(message), warn: (_: unknown, message: string) => logged.push(message) } as unknown as Logger;
        const retention = reportRetention(fleet.repos, { days: 30, everyMs: 3_600_000, log, clock: () => now });
        assert.equal(await retention.sweep(), 6);
        const kept = (await fleet.repos.reports.list({})).map((stored) => stored.report.id).sort();
        assert.deepEqual(kept, ['bench-late', 'bench-new']);
        assert.deepEqual((await fleet.repos.assignments.listForDevice('osaka-1')).map((a) => a.id).sort(), ['assign-answered-new', 'assign-retained-old', 'assign-unanswered-old']);
        assert.deepEqual(await fleet.repos.assignments.listForDevice('gone-1'), []);
        const commands = await store.engine.all('SELECT id FROM fleet_commands ORDER BY id');
        assert.deepEqual(commands.map((row) => row.id), ['command-new', 'command-unanswered-old']);
        assert.deepEqual(logged, ['deleted device reports, answered assignments and fleet commands older than 30 days (--report-retention-days)']);
        assert.equal(await retention.sweep(), 0, 'nothing more to delete');
        assert.equal(await reportRetention(fleet.repos, { days: 0, everyMs: 1, log }).sweep().then(() => fleet.repos.reports.count()), 2);
      });
    });

    test('an answer to an assignment or command never issued to the device changes nothing; answers to issued commands count', async (t) => {
      await withFleet(t, async (fleet, store) => {
        await enroll(fleet, 'osaka-1', {});
        await enroll(fleet, 'kyoto-1', {});
        const outcomes = new AssignmentOutcomes();
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes });
        await ingest.recordTelemetry({
          schema: 1, deviceId: 'osaka-1', sentAt: '2026-03-01T09:00:30Z', uptimeSeconds: 1, cpuPercent: 1, rssBytes: 1e8,
          active: ref('1'), candidate: ref('2'), previous: null,
        });
        // An assignment issued to another device is unknown to this one too.
        await fleet.repos.assignments.insert({
          id: 'assign-kyoto', deviceId: 'kyoto-1', model: 'iris', version: '3', artifactId: ref('3').sha256, role: 'active',
          issuedAt: '2026-03-01T08:59:00.000Z', issuedBy: 'token:op', state: 'published', reason: null, updatedAt: '2026-03-01T08:59:00.000Z',
        });
        const snapshot = async () => JSON.stringify([
          await store.engine.all('SELECT * FROM devices ORDER BY id'),
          await store.engine.all('SELECT * FROM device_reports ORDER BY id'),
          await store.engine.all('SELECT * FROM device_assignments ORDER BY id, device_id'),
        ]);
        const before = await snapshot();
        const ghost = { ...answer('answer-ghost', 'osaka-1', 'nonexistent1', 'activated', '9', 'active'), model: 'ghost' };
        assert.equal(await ingest.ingestReport(ghost), 'unknown-assignment');
        assert.equal(await ingest.ingestReport(answer('answer-other', 'osaka-1', 'assign-kyoto', 'activated', '3', 'active')), 'unknown-assignment');
        assert.equal(await ingest.ingestReport(answer('answer-drop0', 'osaka-1', 'command-0001', 'candidate-dropped', '2', 'candidate')), 'unknown-assignment');
        assert.equal(await snapshot(), before, 'the store changed');
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.active?.model, 'iris');

        // A command the server published to this device: its answer is stored, updates the slots and is announced.
        await fleet.repos.commands.insert({ id: 'command-0001', deviceId: 'osaka-1', command: 'drop-candidate', issuedAt: '2026-03-01T09:01:00.000Z', issuedBy: 'system:rollout' });
        const waited = outcomes.waitFor('command-0001', 'osaka-1', 5000);
        assert.equal(await ingest.ingestReport(answer('answer-drop1', 'osaka-1', 'command-0001', 'candidate-dropped', '2', 'candidate')), 'ingested');
        assert.deepEqual(await waited.promise, { outcome: 'candidate-dropped', reason: null });
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.candidate, null);
        assert.equal((await fleet.repos.reports.findAnswer('command-0001', 'osaka-1'))?.outcome, 'candidate-dropped');
        // The command is marked answered (retention may delete it once it is old).
        assert.equal((await store.engine.get("SELECT answered_at FROM fleet_commands WHERE id = 'command-0001'"))?.answered_at !== null, true);
      });
    });

    test('an answer read after a heartbeat that already stored its slots still moves the metric series (no stale candidate or active series)', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', { cohort: 'pilot' });
        const registry = new Registry();
        const exporter = new ReportMetricsExporter(registry);
        const ingest = new StoreFleetIngest({
          fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(),
          onBenchmark: (reports) => reports.forEach((report) => exporter.observe(report)),
          onSlotsChanged: (deviceId, slots) => exporter.keepSlots(deviceId, slots),
        });
        const issue = (id: string, version: string, role: 'active' | 'candidate') =>
          fleet.repos.assignments.insert({ id, deviceId: 'osaka-1', model: 'iris', version, artifactId: ref(version).sha256, role, issuedAt: '2026-03-01T08:59:00.000Z', issuedBy: 'token:op', state: 'published', reason: null, updatedAt: '2026-03-01T08:59:00.000Z' });
        const beat = (active: string, candidate: string | null) =>
          ingest.recordTelemetry({ schema: 1, deviceId: 'osaka-1', sentAt: '2026-03-01T09:00:30Z', uptimeSeconds: 30, cpuPercent: 1, rssBytes: 1e8, active: ref(active), candidate: candidate ? ref(candidate) : null, previous: null });
        const series = async () => (await registry.metrics()).split('\n').filter((line) => line.startsWith('fleetprune_device_accuracy_ratio{')).map((line) => /version="(\d+)",role="(\w+)"/.exec(line)!.slice(1).join(':')).sort();

        await issue('assign-0001', '1', 'active');
        await ingest.ingestReport(answer('answer-0001', 'osaka-1', 'assign-0001', 'activated', '1', 'active'));
        await issue('assign-0002', '2', 'candidate');
        await ingest.ingestReport(answer('answer-0002', 'osaka-1', 'assign-0002', 'installed', '2', 'candidate'));
        await ingest.ingestReport({ ...benchmark('bench-0001', 'osaka-1', '2026-03-01T09:00:05Z', '1', '2'), assignmentId: 'assign-0002' });
        assert.deepEqual(await series(), ['1:active', '2:candidate']);

        // The pilot is rolled back: the device drops v2, and its next heartbeat is read before the answer.
        await fleet.repos.commands.insert({ id: 'command-0001', deviceId: 'osaka-1', command: 'drop-candidate', issuedAt: '2026-03-01T09:01:00.000Z', issuedBy: 'system:rollout' });
        await beat('1', null);
        await ingest.ingestReport(answer('answer-0003', 'osaka-1', 'command-0001', 'candidate-dropped', '2', 'candidate'));
        assert.deepEqual(await series(), ['1:active'], 'the dropped candidate\'s series went');

        // Likewise a promotion: the heartbeat shows v2 active before the answer is read.
        await issue('assign-0004', '2', 'candidate');
        await ingest.ingestReport(answer('answer-0004', 'osaka-1', 'assign-0004', 'installed', '2', 'candidate'));
        await ingest.ingestReport({ ...benchmark('bench-0002', 'osaka-1', '2026-03-01T09:02:05Z', '1', '2'), assignmentId: 'assign-0004' });
        await issue('assign-0005', '2', 'active');
        await beat('2', null);
        await ingest.ingestReport(answer('answer-0005', 'osaka-1', 'assign-0005', 'activated', '2', 'active'));
        assert.deepEqual(await series(), ['2:active', '2:candidate'], 'v2 is active (the pilot\'s numbers), v1 is gone');
      });
    });

    test('message sequences count up per stream, inside the transaction that takes them, never below the clock', async (t) => {
      await withFleet(t, async (fleet, store) => {
        let now = 1_000;
        const sequences = new FleetSequencesRepository(store.engine, () => now);
        assert.deepEqual([await sequences.next('assignment'), await sequences.next('assignment'), await sequences.next('command')], [1_000_000, 1_000_001, 1_000_000]);
        await assert.rejects(store.engine.transaction(async (tx) => {
          await new FleetSequencesRepository(tx, () => now).next('assignment');
          throw new Error('rolled back');
        }), /rolled back/);
        assert.equal(await sequences.next('assignment'), 1_000_002, 'a rolled-back transaction gives its number back');
        // A database restored from a backup: the counter goes back, the clock does not.
        await store.engine.run("UPDATE fleet_sequences SET value = 5 WHERE name = 'assignment'");
        now = 2_000;
        assert.equal(await sequences.next('assignment'), 2_000_000);
        assert.equal(await sequences.next('assignment'), 2_000_001);
        // A server whose clock is behind (a new leader) still counts up.
        now = 1_500;
        assert.equal(await sequences.next('assignment'), 2_000_002);
        assert.ok((await fleet.repos.sequences.next('command')) >= Date.now() * 1000 - 1_000_000, 'the real clock by default');
      });
    });

    test('a report from a device that is not enrolled, or was revoked while it was in flight, is dropped: not stored, not exported', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', {});
        const exported: DeviceReport[] = [];
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), onBenchmark: (reports) => exported.push(...reports) });
        assert.equal(await ingest.ingestReport(benchmark('bench-ghost', 'nobody', '2026-03-01T09:00:00.000Z', '1', '2')), 'unknown-device');
        await fleet.repos.devices.revoke('osaka-1', '2026-03-01T09:30:00.000Z');
        assert.equal(await ingest.ingestReport(benchmark('bench-late', 'osaka-1', '2026-03-01T09:00:00.000Z', '1', '2')), 'unknown-device');
        assert.equal(await fleet.repos.reports.count(), 0);
        assert.deepEqual(exported, []);
      });
    });

    test('a benchmark report naming a model that is not a registered version with that sha256 is dropped (unknown-model), counted, logged, and stores nothing; a retired version is still taken', async (t) => {
      await withFleet(t, async (fleet, store) => {
        await enroll(fleet, 'osaka-1', {});
        await store.models.setRetired('iris', '1', true);
        const exported: DeviceReport[] = [];
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), onBenchmark: (reports) => exported.push(...reports) });
        const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'] as const, registers: [new Registry()] });
        const { logger, lines } = recordingLogger();
        const receiver = new FleetReceiver({ broker: {} as Broker, ingest, logger, dropped, storeRetryDelaysMs: [], droppedLogEveryMs: 0 });
        const publish = (report: BenchmarkReport) => receiver.handle(reportsTopic('osaka-1'), Buffer.from(JSON.stringify(report)));
        const good = benchmark('bench-good', 'osaka-1', '2026-03-01T09:00:05Z', '1', '2');

        // A model the registry never held; a registered version with another artifact's sha256; an unregistered active version.
        await publish({ ...good, id: 'bench-ghost', candidate: { ...good.candidate, model: 'ghost', version: '9' } });
        await publish({ ...good, id: 'bench-forged', candidate: { ...good.candidate, sha256: 'f'.repeat(64) } });
        await publish({ ...good, id: 'bench-active', active: { ...good.active!, version: '10' } });
        assert.deepEqual((await dropped.get()).values.map((value) => [value.labels.kind, value.labels.reason, value.value]), [['reports', 'unknown-model', 3]]);
        assert.deepEqual(lines.map((line) => line.msg), [
          'dropped a benchmark report whose candidate ghost@9 is not a registered version with that sha256',
          'dropped a benchmark report whose candidate iris@2 is not a registered version with that sha256',
          'dropped a benchmark report whose active iris@10 is not a registered version with that sha256',
        ]);
        assert.deepEqual(lines.map((line) => [line.reportId, line.reason]), [['bench-ghost', 'unknown-model'], ['bench-forged', 'unknown-model'], ['bench-active', 'unknown-model']]);
        assert.equal(await fleet.repos.reports.count(), 0, 'no history row');
        assert.equal((await fleet.repos.devices.get('osaka-1'))!.reportTotals, null, 'no totals');
        assert.equal(exported.length, 0, 'no series');
        assert.deepEqual(await ingest.ingestReport({ ...good, id: 'bench-ghost-2', active: null, candidate: { ...good.candidate, model: 'ghost', version: '9' } }), { outcome: 'unknown-model', role: 'candidate', ref: { model: 'ghost', version: '9', sha256: ref('2').sha256 } });

        // The registered versions, the active one retired (devices still run retired versions): taken as before.
        await publish(good);
        assert.equal(await fleet.repos.reports.count(), 1);
        assert.deepEqual((await fleet.repos.devices.get('osaka-1'))!.reportTotals!.map((total) => total.version).sort(), ['1', '2']);
        assert.deepEqual(exported.map((report) => `${report.model}@${report.version}`), ['iris@1', 'iris@2']);
        assert.equal((await dropped.get()).values.reduce((sum, value) => sum + value.value, 0), 3);
      });
    });

    test('an answer or a benchmark naming another model than its assignment, or an assignment never issued to the device, is dropped, logged, and changes nothing', async (t) => {
      await withFleet(t, async (fleet, store) => {
        await enroll(fleet, 'osaka-1', {});
        await enroll(fleet, 'kyoto-1', {});
        const assign = (id: string, deviceId: string, version: string, role: 'active' | 'candidate') =>
          fleet.repos.assignments.insert({
            id, deviceId, model: 'iris', version, artifactId: ref(version).sha256, role,
            issuedAt: '2026-03-01T08:59:00.000Z', issuedBy: 'token:op', state: 'published', reason: null, updatedAt: '2026-03-01T08:59:00.000Z',
          });
        await assign('assign-cand2', 'osaka-1', '2', 'candidate');
        await assign('assign-act1', 'osaka-1', '1', 'active');
        await assign('assign-kyoto3', 'kyoto-1', '3', 'candidate');
        await fleet.repos.commands.insert({ id: 'command-drop', deviceId: 'osaka-1', command: 'drop-candidate', issuedAt: '2026-03-01T08:59:00.000Z', issuedBy: 'rollout:ro-1' });
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes() });
        const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'] as const, registers: [new Registry()] });
        const { logger, lines } = recordingLogger();
        const receiver = new FleetReceiver({ broker: {} as Broker, ingest, logger, dropped, storeRetryDelaysMs: [], droppedLogEveryMs: 0 });
        const publish = (report: Report) => receiver.handle(reportsTopic('osaka-1'), Buffer.from(JSON.stringify(report)));
        const snapshot = async () => JSON.stringify([
          await store.engine.all('SELECT * FROM devices ORDER BY id'),
          await store.engine.all('SELECT * FROM device_reports ORDER BY id'),
          await store.engine.all('SELECT * FROM device_assignments ORDER BY id, device_id'),
        ]);
        const before = await snapshot();

        // Answers that would put a model the device was not assigned in its slot: another artifact
        // (even a registered one), the assigned artifact under another name.
        await publish(answer('answer-evil', 'osaka-1', 'assign-act1', 'activated', '3', 'active'));
        await publish({ ...answer('answer-renamed', 'osaka-1', 'assign-cand2', 'installed', '2', 'candidate'), model: 'evil' });
        // A benchmark of a candidate its assignment did not name; one naming an assignment of another device; one naming none issued.
        await publish({ ...benchmark('bench-other', 'osaka-1', '2026-03-01T09:00:05Z', '1', '3'), assignmentId: 'assign-cand2' });
        await publish({ ...benchmark('bench-kyoto', 'osaka-1', '2026-03-01T09:00:05Z', '1', '3'), assignmentId: 'assign-kyoto3' });
        await publish({ ...benchmark('bench-never', 'osaka-1', '2026-03-01T09:00:05Z', '1', '2'), assignmentId: 'NeverIssued0000' });
        // Answers the issued message cannot have: a candidate "activated" (it would show as the active model), an
        // installed candidate named as the active slot, an active assignment answered as a dropped candidate, a
        // drop-candidate command answered as a rollback.
        await publish(answer('answer-promoted', 'osaka-1', 'assign-cand2', 'activated', '2', 'active'));
        await publish(answer('answer-role', 'osaka-1', 'assign-cand2', 'installed', '2', 'active'));
        await publish(answer('answer-dropped', 'osaka-1', 'assign-act1', 'candidate-dropped', '1', 'candidate'));
        await publish(answer('answer-command', 'osaka-1', 'command-drop', 'rolled-back', '1', 'active'));
        assert.equal(await snapshot(), before, 'the store changed');
        assert.deepEqual((await dropped.get()).values.map((value) => [value.labels.reason, value.value]).sort(), [['unknown-assignment', 2], ['wrong-model', 3], ['wrong-outcome', 4]]);
        assert.deepEqual(lines.map((line) => line.msg), [
          'dropped an answer (activated) naming iris@3 where its assignment names iris@1',
          'dropped an answer (installed) naming evil@2 where its assignment names iris@2',
          'dropped a benchmark report naming iris@3 where its assignment names iris@2',
          'dropped a benchmark report naming an assignment the server did not issue to the device',
          'dropped a benchmark report naming an assignment the server did not issue to the device',
          'dropped an answer (activated, role active) that the assignment or command it answers cannot have',
          'dropped an answer (installed, role active) that the assignment or command it answers cannot have',
          'dropped an answer (candidate-dropped, role candidate) that the assignment or command it answers cannot have',
          'dropped an answer (rolled-back, role active) that the assignment or command it answers cannot have',
        ]);

        // The same reports naming what was assigned are taken.
        await publish(answer('answer-good', 'osaka-1', 'assign-cand2', 'installed', '2', 'candidate'));
        await publish({ ...benchmark('bench-good', 'osaka-1', '2026-03-01T09:00:05Z', '1', '2'), assignmentId: 'assign-cand2' });
        assert.deepEqual((await fleet.repos.reports.list({ clock: 'server' })).map(({ report }) => report.id).sort(), ['answer-good', 'bench-good']);
        assert.deepEqual((await fleet.repos.devices.get('osaka-1'))!.candidate, ref('2'));
        assert.equal((await dropped.get()).values.reduce((sum, value) => sum + value.value, 0), 9);
      });
    });

    test('a status or heartbeat from a revoked device (in flight at the revocation, or its retained status read again) does not bring it back online', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', {});
        const online: string[] = [];
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), onDeviceOnline: (id) => online.push(id) });
        await ingest.recordStatus({ schema: 1, deviceId: 'osaka-1', online: true, since: '2026-03-01T08:59:00.000Z' });
        assert.deepEqual(online, ['osaka-1']);
        assert.ok(await fleet.repos.devices.revoke('osaka-1', '2026-03-01T09:30:00.000Z'));
        await ingest.recordStatus({ schema: 1, deviceId: 'osaka-1', online: true, since: '2026-03-01T08:59:00.000Z' });
        await ingest.recordTelemetry({ schema: 1, deviceId: 'osaka-1', sentAt: '2026-03-01T09:30:01Z', uptimeSeconds: 5, cpuPercent: 1, rssBytes: 1e8, active: ref('1'), candidate: ref('2'), previous: null });
        const device = (await fleet.repos.devices.get('osaka-1'))!;
        assert.deepEqual([device.online, device.active, device.candidate, device.heartbeat], [false, null, null, null]);
        assert.deepEqual(online, ['osaka-1'], 'no rollout is told a revoked device came online');
        await ingest.recordStatus({ schema: 1, deviceId: 'nobody', online: true, since: '2026-03-01T08:59:00.000Z' });
        assert.deepEqual(online, ['osaka-1'], 'nor one never enrolled');
      });
    });

    test("after a restart, the server exports each live device's latest benchmark per model again", async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', { cohort: 'pilot' });
        await enroll(fleet, 'kyoto-1', {});
        await enroll(fleet, 'gone-1', {});
        // One server clock for every report: all received in the same millisecond, as a burst can be.
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => new Date('2026-03-01T12:00:00.000Z') });
        await ingest.ingestReport(benchmark('bench-0001', 'osaka-1', '2026-03-01T09:00:00.000Z', '1', '2'));
        await ingest.ingestReport(benchmark('bench-0002', 'kyoto-1', '2026-03-01T09:10:00.000Z', null, '2'));
        await ingest.ingestReport(benchmark('bench-0003', 'osaka-1', '2026-03-01T10:00:00.000Z', '2', '3'));
        await ingest.ingestReport(benchmark('bench-0004', 'gone-1', '2026-03-01T10:00:00.000Z', '1', '2'));
        await fleet.repos.devices.revoke('gone-1', '2026-03-01T11:00:00.000Z');
        const latest = await fleet.repos.reports.latestBenchmarks();
        assert.deepEqual(latest.map((stored) => [stored.report.id, stored.cohort]), [['bench-0002', 'none'], ['bench-0003', 'pilot']]);

        const registry = new Registry();
        const exporter = new ReportMetricsExporter(registry);
        exporter.observe({ model: 'iris', version: '9', role: 'candidate', cohort: 'x', deviceId: 'gone-1', accuracy: 0.5, latencyMs: { p50: 1, p95: 1, p99: 1 }, errors: 0, predictions: 1, ts: new Date() });
        exporter.restore(latest.flatMap(({ report, cohort }) => (report.kind === 'benchmark' ? deviceReportsFromBenchmark(report, cohort) : [])));
        const accuracy = (await registry.getSingleMetric('fleetprune_device_accuracy_ratio')!.get()).values;
        assert.deepEqual(accuracy.map((v) => [v.labels.device, v.labels.role, v.labels.version, v.value]).sort(), [
          ['kyoto-1', 'candidate', '2', 0.93],
          ['osaka-1', 'active', '2', 0.9],
          ['osaka-1', 'candidate', '3', 0.93],
        ]);
      });
    });

    test('report history: benchmark reports in a time window, by model, with the cohort at arrival', async (t) => {
      await withFleet(t, async (fleet) => {
        await enroll(fleet, 'osaka-1', { cohort: 'pilot' });
        await enroll(fleet, 'kyoto-1', {});
        // Reports are timed by their arrival (the server's clock); kyoto-1's own clock is an hour behind.
        let now = new Date('2026-03-01T09:00:00.000Z');
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => now });
        await ingest.ingestReport(benchmark('bench-0001', 'osaka-1', '2026-03-01T09:00:00.000Z', '1', '2'));
        now = new Date('2026-03-01T09:10:00.000Z');
        await ingest.ingestReport(benchmark('bench-0002', 'kyoto-1', '2026-03-01T08:10:00Z', null, '2'));
        now = new Date('2026-03-01T10:00:00.000Z');
        await ingest.ingestReport(benchmark('bench-0003', 'osaka-1', '2026-03-01T10:00:00.000Z', '1', '2'));
        const history = new StoreReportHistory(fleet);
        const window = await history.reports({ since: new Date('2026-03-01T09:00:00Z'), until: new Date('2026-03-01T09:10:00Z') });
        assert.deepEqual(window.map((r) => [r.deviceId, r.role, r.version, r.cohort, r.accuracy]), [
          ['osaka-1', 'active', '1', 'pilot', 0.9],
          ['osaka-1', 'candidate', '2', 'pilot', 0.93],
          ['kyoto-1', 'candidate', '2', 'none', 0.93],
        ]);
        // Past the limit, the oldest are left out (a window's newest reports are what analysis needs), still oldest first.
        const limited = await fleet.repos.reports.list({ kind: 'benchmark', since: new Date(0), until: new Date('2030-01-01'), limit: 2, clock: 'server' });
        assert.deepEqual(limited.map((stored) => stored.report.id), ['bench-0002', 'bench-0003']);
        assert.equal((await history.reports({ model: 'other', since: new Date(0), until: new Date('2030-01-01') })).length, 0);
        assert.equal((await history.reports({ model: 'iris', since: new Date(0), until: new Date('2030-01-01') })).length, 5);
      });
    });
  });
}
