import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { hashPassword } from '../../server/broker/password-hash.ts';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { InMemoryFleetIngest } from '../../server/fleet/in-memory-fleet-ingest.ts';
import { ReportRateLimit } from '../../server/fleet/report-rate-limit.ts';
import { StoreCredentialStore } from '../../server/fleet/store-credential-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { openStore } from '../../server/store/open-store.ts';
import { reportsTopic } from '../../shared/protocol/topics.ts';
import { engineMissing } from '../helpers/engines.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';

const candidate = { model: 'iris', version: '2', sha256: 'a'.repeat(64), role: 'candidate', score: { accuracy: 0.9, correct: 9, total: 10 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 10 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 5, rssIncreaseBytes: 0 };
const benchmark = (id: string) =>
  JSON.stringify({ schema: 1, id, kind: 'benchmark', deviceId: 'dev-a', createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 10, fingerprint: 'f', task: 'classification' }, active: null, candidate });

function counters() {
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const duplicates = new Counter({ name: 'duplicates_total', help: 'x', registers: [registry] });
  const accepted = new Counter({ name: 'accepted_total', help: 'x', labelNames: ['kind'] as const, registers: [registry] });
  const value = async (counter: Counter<string>, labels: Record<string, string> = {}) =>
    (await counter.get()).values.filter((entry) => Object.entries(labels).every(([key, wanted]) => entry.labels[key] === wanted)).reduce((sum, entry) => sum + entry.value, 0);
  return { dropped, duplicates, accepted, value };
}

test('mosquitto: a report a device published retained, handed over again when the server subscribes again, is dropped as retained, not counted as a duplicate', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await mkdtemp(join(tmpdir(), 'fleet-retained-report-'));
  const store = await openStore({ engine: 'sqlite', dataDir: dir });
  const fleet = new FleetStore(store);
  const secret = randomBytes(24).toString('base64url');
  await fleet.repos.devices.insert({ id: 'dev-a', labels: { cohort: 'pilot' }, secretHash: await hashPassword(secret), tokenId: 'tok-dev-a', enrolledAt: new Date().toISOString(), enrolledBy: 'test' });
  const credentials = new StoreCredentialStore(fleet);
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(24).toString('base64url') };
  const mosquitto = await MosquittoProcess.create(binary);
  await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
  await mosquitto.start();
  const broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger });
  const { dropped, duplicates, accepted, value } = counters();
  const reportLimit = new ReportRateLimit({ dropped, logger: testLogger });
  const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes() });
  const receiver = new FleetReceiver({ broker, ingest, logger: testLogger, dropped, duplicates, accepted, reportLimit, storeRetryDelaysMs: [] });
  await receiver.start();
  await broker.start();
  const device = await connectClient(mosquitto.url, { clientId: 'dev-a', username: 'dev-a', password: secret });
  t.after(async () => {
    await device.endAsync(true);
    await broker.stop();
    reportLimit.close();
    await mosquitto.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
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
