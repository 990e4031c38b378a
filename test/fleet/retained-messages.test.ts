import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Counter, Registry } from 'prom-client';
import type { MqttClient } from 'mqtt';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { hashPassword } from '../../server/broker/password-hash.ts';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import { InMemoryFleetIngest } from '../../server/fleet/in-memory-fleet-ingest.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { ReportRateLimit } from '../../server/fleet/report-rate-limit.ts';
import { StoreCredentialStore } from '../../server/fleet/store-credential-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { Store } from '../../server/store/store.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { engineMissing } from '../helpers/engines.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

/**
 * Heartbeats and reports are published without retain (docs/protocol.md). One a device published
 * retained anyway reaches the server live once; what an external broker hands over again at each
 * resubscription is that same message, which the server drops (reason `retained`).
 */

const ACTIVE = { model: 'iris', version: '1', sha256: 'a'.repeat(64) };

function heartbeat(uptimeSeconds: number, predictions: number): string {
  return JSON.stringify({
    schema: 1, deviceId: 'dev-a', sentAt: new Date().toISOString(), uptimeSeconds, cpuPercent: 1, rssBytes: 1000,
    active: ACTIVE, candidate: null, previous: null,
    serving: { predictions, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 },
  });
}

const candidate = { model: 'iris', version: '2', sha256: 'a'.repeat(64), role: 'candidate', score: { accuracy: 0.9, correct: 9, total: 10 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 10 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 5, rssIncreaseBytes: 0 };
const benchmark = (id: string) =>
  JSON.stringify({ schema: 1, id, kind: 'benchmark', deviceId: 'dev-a', createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 10, fingerprint: 'f', task: 'classification' }, active: null, candidate });

type Counters = ReturnType<typeof counters>;

function counters() {
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const duplicates = new Counter({ name: 'duplicates_total', help: 'x', registers: [registry] });
  const accepted = new Counter({ name: 'accepted_total', help: 'x', labelNames: ['kind'] as const, registers: [registry] });
  const value = async (counter: Counter<string>, labels: Record<string, string> = {}) =>
    (await counter.get()).values.filter((entry) => Object.entries(labels).every(([key, wanted]) => entry.labels[key] === wanted)).reduce((sum, entry) => sum + entry.value, 0);
  return { dropped, duplicates, accepted, value };
}

/** A fleet on SQLite behind a private Mosquitto, its receiver counting into `counters`, and device dev-a connected. */
async function mosquittoFleet(t: TestContext, counted: Counters, reportLimit?: ReportRateLimit): Promise<{ store: Store; fleet: FleetStore; broker: ExternalBroker; device: MqttClient } | undefined> {
  const binary = mosquittoBinary();
  if (!binary) {
    engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), 'fleet-retained-'));
  const store = await openStore({ engine: 'sqlite', dataDir: dir });
  const fleet = new FleetStore(store);
  // The version the benchmark reports name, registered (the ingest takes benchmarks of registered versions only).
  await registerVersions(store, [{ model: candidate.model, version: candidate.version, sha256: candidate.sha256 }]);
  const secret = randomBytes(24).toString('base64url');
  await fleet.repos.devices.insert({ id: 'dev-a', labels: { cohort: 'pilot' }, secretHash: await hashPassword(secret), tokenId: 'tok-dev-a', enrolledAt: new Date().toISOString(), enrolledBy: 'test' });
  const credentials = new StoreCredentialStore(fleet);
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(24).toString('base64url') };
  // Cleanup registered before anything starts: a failure half-way (a broker that does not connect, a device refused)
  // must not leave Mosquitto running, or the broker's client reconnecting, which keeps the process alive.
  let mosquitto: MosquittoProcess | undefined;
  let broker: ExternalBroker | undefined;
  let device: MqttClient | undefined;
  t.after(async () => {
    await device?.endAsync(true);
    await broker?.stop();
    reportLimit?.close();
    await mosquitto?.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  mosquitto = await MosquittoProcess.create(binary);
  await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
  await mosquitto.start();
  broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger });
  const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes() });
  const { dropped, duplicates, accepted } = counted;
  const receiver = new FleetReceiver({ broker, ingest, logger: testLogger, dropped, duplicates, accepted, ...(reportLimit ? { reportLimit } : {}), storeRetryDelaysMs: [] });
  await receiver.start();
  await broker.start();
  device = await connectClient(mosquitto.url, { clientId: 'dev-a', username: 'dev-a', password: secret });
  return { store, fleet, broker, device };
}

test('mosquitto: a heartbeat a device published retained is not counted again each time the server subscribes again (its served totals stay right)', async (t) => {
  const counted = counters();
  const world = await mosquittoFleet(t, counted);
  if (!world) return;
  const { fleet, broker, device } = world;
  const { dropped } = counted;
  const stored = async () => (await fleet.repos.devices.get('dev-a'))!;
  const predictions = async () => (await stored()).servingTotals.reduce((sum, total) => sum + total.predictions, 0);

  // A heartbeat published retained (the protocol says not retained: a misbehaving agent, or an operator's `mosquitto_pub -r`), then a normal one.
  await device.publishAsync(telemetryTopic('dev-a'), heartbeat(100, 50), { qos: 1, retain: true });
  await waitFor(async () => (await stored()).heartbeat?.uptimeSeconds === 100, 10_000, 'the first heartbeat');
  await device.publishAsync(telemetryTopic('dev-a'), heartbeat(200, 80), { qos: 1, retain: false });
  await waitFor(async () => (await stored()).heartbeat?.uptimeSeconds === 200, 10_000, 'the second heartbeat');
  assert.equal(await predictions(), 80);

  // The server's connection to the broker drops and comes back: it subscribes again, and Mosquitto sends the retained (stale) heartbeat.
  await broker.stop();
  await broker.start();
  await device.publishAsync(telemetryTopic('dev-a'), heartbeat(300, 100), { qos: 1, retain: false });
  await waitFor(async () => (await stored()).heartbeat?.uptimeSeconds === 300, 10_000, 'the third heartbeat');
  assert.equal(await predictions(), 100, 'the device served 100 predictions in all; the stale retained heartbeat must not count as a restart');
  assert.ok(((await dropped.get()).values.find((value) => value.labels.reason === 'retained')?.value ?? 0) >= 1, 'the replayed heartbeat is counted as dropped, reason retained');
  assert.equal((await stored()).heartbeat?.uptimeSeconds, 300);
});

test('mosquitto: a report a device published retained, handed over again when the server subscribes again, is dropped as retained, not counted as a duplicate', async (t) => {
  const counted = counters();
  const reportLimit = new ReportRateLimit({ dropped: counted.dropped, logger: testLogger });
  const world = await mosquittoFleet(t, counted, reportLimit);
  if (!world) return;
  const { store, broker, device } = world;
  const { dropped, duplicates, accepted, value } = counted;
  const storedReports = async () => Number((await store.engine.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM device_reports WHERE device_id = ?', ['dev-a']))?.n ?? 0);

  // Published retained (the protocol says not retained: a misbehaving agent, or an operator's `mosquitto_pub -r`): the server reads it live once.
  await device.publishAsync(reportsTopic('dev-a'), benchmark('bench-retained-1'), { qos: 1, retain: true });
  await waitFor(async () => (await storedReports()) === 1, 10_000, 'the report stored');
  assert.equal(await value(accepted, { kind: 'reports' }), 1);

  // The server's connection drops and comes back: it subscribes again and Mosquitto hands over the retained report.
  await broker.stop();
  await broker.start();
  await waitFor(async () => (await value(duplicates)) + (await value(dropped, { kind: 'reports' })) >= 1, 10_000, 'the replayed report read and counted');
  assert.equal(await value(duplicates), 0, 'the device did not send the report twice: not a duplicate');
  assert.equal(await value(dropped, { kind: 'reports', reason: 'retained' }), 1, 'the replay counts as dropped, reason retained');
  assert.equal(await value(accepted, { kind: 'reports' }), 1);
  assert.equal(await storedReports(), 1);
});

test('the receiver drops a heartbeat (and a report) delivered as a retained message, and still takes a retained status', async () => {
  const ingest = new InMemoryFleetIngest();
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const receiver = new FleetReceiver({ broker: {} as ExternalBroker, ingest, logger: testLogger, dropped, storeRetryDelaysMs: [] });
  await receiver.handle(telemetryTopic('dev-a'), Buffer.from(heartbeat(100, 50)), { retained: true });
  assert.equal(ingest.telemetry.size, 0, 'a replayed heartbeat is not ingested');
  assert.deepEqual((await dropped.get()).values.map((value) => [value.labels.kind, value.labels.reason, value.value]), [['telemetry', 'retained', 1]]);
  await receiver.handle(telemetryTopic('dev-a'), Buffer.from(heartbeat(200, 80)), { retained: false });
  await receiver.handle(telemetryTopic('dev-a'), Buffer.from(heartbeat(300, 90)));
  assert.equal(ingest.telemetry.get('dev-a')?.uptimeSeconds, 300, 'live heartbeats are ingested');
  // Statuses are retained by the protocol (the server relies on their replay).
  await receiver.handle(statusTopic('dev-a'), Buffer.from(JSON.stringify({ schema: 1, deviceId: 'dev-a', online: true, since: new Date().toISOString() })), { retained: true });
  assert.equal(ingest.statuses.get('dev-a')?.online, true);
  // Reports are not: a retained one was read live when it was published; its replay is dropped (above).
  const report = { schema: 1, id: newMessageId(), kind: 'assignment', deviceId: 'dev-a', createdAt: new Date().toISOString(), assignmentId: newMessageId(), outcome: 'refused', role: 'candidate', model: 'm', version: '1', sha256: 'c'.repeat(64), reason: 'x' };
  await receiver.handle(reportsTopic('dev-a'), Buffer.from(JSON.stringify(report)), { retained: true });
  assert.equal(ingest.reports.length, 0);
  await receiver.handle(reportsTopic('dev-a'), Buffer.from(JSON.stringify(report)), { retained: false });
  assert.equal(ingest.reports.length, 1);
});

test('the receiver drops a report delivered as a retained message before it takes a rate-limit token or reaches the ingest', async () => {
  const ingest = new InMemoryFleetIngest();
  const { dropped, duplicates, value } = counters();
  const reportLimit = new ReportRateLimit({ dropped, logger: testLogger, burst: 1, refillMs: 3_600_000 });
  const receiver = new FleetReceiver({ broker: {} as ExternalBroker, ingest, logger: testLogger, dropped, duplicates, reportLimit, storeRetryDelaysMs: [] });
  await receiver.handle(reportsTopic('dev-a'), Buffer.from(benchmark('bench-replayed')), { retained: true });
  assert.equal(ingest.reports.length, 0, 'a replayed report is not ingested');
  assert.equal(await value(dropped, { kind: 'reports', reason: 'retained' }), 1);
  await receiver.handle(reportsTopic('dev-a'), Buffer.from(benchmark('bench-live-01')), { retained: false });
  assert.deepEqual(ingest.reports.map((report) => report.id), ['bench-live-01'], 'the live report still finds its token');
  reportLimit.close();
});
