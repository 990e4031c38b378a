import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import { Counter, Registry } from 'prom-client';
import type { Broker, MessageHandler } from '../../server/broker/broker.ts';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { clearRetainedStatus } from '../../server/fleet/fleet-publisher.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import type { FleetIngest } from '../../server/fleet/fleet-ingest.ts';
import { reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { BROKER_KINDS, harnessFor } from '../broker/broker-harnesses.ts';
import { engineMissing } from '../helpers/engines.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

const status = (deviceId: string, online: boolean) => JSON.stringify({ schema: 1, deviceId, online, since: new Date().toISOString() });

/** Connects as a device (its credentials may need a moment to reach an external broker), publishes its retained status, disconnects. */
async function publishRetainedStatus(url: string, deviceId: string, password: string, online: boolean): Promise<void> {
  let client: MqttClient | undefined;
  await waitFor(async () => {
    client = await connectClient(url, { clientId: deviceId, username: deviceId, password }).catch(() => undefined);
    return client !== undefined;
  }, 10_000, `${deviceId} let in by the broker`);
  await client!.publishAsync(statusTopic(deviceId), status(deviceId, online), { qos: 1, retain: true });
  await client!.endAsync();
}

/**
 * The retained statuses `observer` is handed when it subscribes to each of `deviceIds`' status
 * topics, one subscription after the other: the broker sends a subscription's retained message
 * before it answers the next subscription, so the last device's (which has one) marks the end.
 */
async function retainedStatuses(observer: MqttClient, deviceIds: readonly string[]): Promise<string[]> {
  const seen: string[] = [];
  observer.on('message', (topic, payload, packet) => {
    if (packet.retain && payload.length > 0) seen.push(topic.split('/')[3]!);
  });
  for (const id of deviceIds) await observer.subscribeAsync(statusTopic(id), { qos: 1 });
  await waitFor(() => seen.includes(deviceIds.at(-1)!), 10_000, `the retained status of ${deviceIds.at(-1)}`);
  return seen;
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-revoked-status-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

for (const kind of BROKER_KINDS) {
  test(`${kind}: the server clears a device's retained status with an empty retained message; the other devices' stay, and its own subscription does not count the clear as a dropped message`, { timeout: 60_000 }, async (t) => {
    const harness = await harnessFor(t, kind);
    if (!harness) return;
    const access = { url: 'http://127.0.0.1:1', token: 'unused', publicKey: (await import('node:crypto')).generateKeyPairSync('ed25519').publicKey };
    const gone = await harness.enroll('dev-gone', access);
    const kept = await harness.enroll('dev-kept', access);
    await publishRetainedStatus(harness.broker.url, 'dev-gone', gone.broker.password, false);
    await publishRetainedStatus(harness.broker.url, 'dev-kept', kept.broker.password, false);
    await waitFor(() => harness.ingest.statuses.has('dev-gone') && harness.ingest.statuses.has('dev-kept'), 10_000, 'both statuses received');
    harness.credentials.revoke('dev-gone');
    await harness.broker.credentialsChanged();
    await clearRetainedStatus(harness.broker, 'dev-gone');
    // A status dev-kept sends after the clear: once it is in, the clear's echo was handled before it.
    harness.ingest.statuses.delete('dev-kept');
    await publishRetainedStatus(harness.broker.url, 'dev-kept', kept.broker.password, false);
    await waitFor(() => harness.ingest.statuses.has('dev-kept'), 10_000, 'dev-kept\'s second status received');
    assert.equal(await harness.droppedCount(), 0, 'the empty message clearing a status is not a dropped device message');

    // Mosquitto pins the client id to the user name: the server's own connection goes first.
    if (kind === 'mosquitto') await harness.broker.stop();
    const observer = await connectClient(harness.broker.url, { clientId: 'status-observer', username: harness.server.username, password: harness.server.password });
    t.after(() => observer.endAsync(true));
    assert.deepEqual(await retainedStatuses(observer, ['dev-gone', 'dev-kept']), ['dev-kept'], 'no retained status left for the revoked device; the other one kept its own');
  });
}

test('the receiver ignores an empty status (a cleared retained one), and asks for the retained status of a revoked device it drops to be cleared', async () => {
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const handlers: MessageHandler[] = [];
  const broker = { subscribe: async (_filter: string, handler: MessageHandler) => void handlers.push(handler) } as unknown as Broker;
  const statuses: string[] = [];
  const ingest: FleetIngest = {
    ingestReport: async () => 'ingested',
    recordTelemetry: async () => 'recorded',
    recordStatus: async (s) => (statuses.push(s.deviceId), s.deviceId === 'dev-revoked' ? 'unknown-device' : 'recorded'),
  };
  const cleared: string[] = [];
  const receiver = new FleetReceiver({ broker, ingest, logger: testLogger, dropped, onUnknownDeviceStatus: (id) => cleared.push(id) });
  await receiver.start();
  await receiver.handle(statusTopic('dev-revoked'), Buffer.alloc(0), { retained: false });
  assert.deepEqual((await dropped.get()).values, [], 'an empty status is not counted as dropped');
  assert.deepEqual(statuses, [], 'nor handed to the ingest');
  await receiver.handle(statusTopic('dev-revoked'), Buffer.from(status('dev-revoked', false)), { retained: true });
  await receiver.handle(statusTopic('dev-live'), Buffer.from(status('dev-live', true)), { retained: true });
  assert.deepEqual(cleared, ['dev-revoked'], 'only the revoked device\'s status is cleared');
});

/**
 * The reviewer's case: a revoked device's retained `offline` stayed in Mosquitto, so every leader
 * start logged a warn and counted fleetprune_fleet_dropped_messages_total{kind="status",reason="unknown-device"}.
 */
test('mosquitto, through the server: revoking a device clears its retained status from the broker; its id cannot be enrolled again (ids are never reused), and the other device is untouched', { timeout: 90_000 }, async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'Mosquitto', 'no mosquitto binary (apt-get install mosquitto)');
  const dir = await scratch(t);
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile } }))!;
  const enroll = async (id: string) => {
    const response = await server.request('POST', '/api/devices', { json: { id, labels: {} } });
    assert.equal(response.status, 201, await response.clone().text());
    return ((await response.json()) as { broker: { password: string } }).broker.password;
  };
  const goneSecret = await enroll('dev-gone');
  const keptSecret = await enroll('dev-kept');
  await publishRetainedStatus(mosquitto.url, 'dev-gone', goneSecret, false);
  await publishRetainedStatus(mosquitto.url, 'dev-kept', keptSecret, false);
  const revoked = await server.request('DELETE', '/api/devices/dev-gone');
  assert.equal(revoked.status, 204, await revoked.text());
  const again = await server.request('POST', '/api/devices', { json: { id: 'dev-gone', labels: {} } });
  assert.equal(again.status, 409, 'a revoked id is not enrolled again');
  // It said "already enrolled", of a device the operator had just revoked.
  assert.match(((await again.json()) as { error: { message: string } }).error.message, /^device dev-gone was revoked at \S+, and device ids are never reused: enroll the device under a new id$/);
  const metrics = await (await server.request('GET', '/metrics')).text();
  assert.doesNotMatch(metrics, /fleetprune_fleet_dropped_messages_total\{[^}]*reason="malformed/, 'the clear is not counted as a malformed status');

  // The server's identity is the only one that may read a device's status; its client id is its user name.
  await server.server.close();
  const observer = await connectClient(mosquitto.url, { clientId: DEFAULT_SERVER_USERNAME, username: DEFAULT_SERVER_USERNAME, password });
  t.after(() => observer.endAsync(true));
  assert.deepEqual(await retainedStatuses(observer, ['dev-gone', 'dev-kept']), ['dev-kept'], 'no retained status left for the revoked device, so no leader start drops it again');
});

// A report or heartbeat a device published retained (a revoked one's too) came back at every
// connection of the server, for good, and was dropped again each time: the receiver asks for it to be cleared.
test('the receiver asks for a report or heartbeat handed over retained to be cleared, whatever it holds, and ignores the clear itself', async () => {
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const broker = { subscribe: async () => {} } as unknown as Broker;
  const ingest: FleetIngest = { ingestReport: async () => 'ingested', recordTelemetry: async () => 'recorded', recordStatus: async () => 'recorded' };
  const cleared: string[] = [];
  const receiver = new FleetReceiver({ broker, ingest, logger: testLogger, dropped, onRetainedDeviceMessage: (topic) => cleared.push(topic) });
  await receiver.start();
  await receiver.handle(reportsTopic('dev-gone'), Buffer.from('{"x":1}'), { retained: true });
  await receiver.handle(telemetryTopic('dev-gone'), Buffer.from('not json'), { retained: true });
  await receiver.handle(reportsTopic('dev-live'), Buffer.from('{"x":1}'), { retained: false });
  await receiver.handle(statusTopic('dev-live'), Buffer.from(status('dev-live', true)), { retained: true });
  assert.deepEqual(cleared, [reportsTopic('dev-gone'), telemetryTopic('dev-gone')], 'only what was handed over retained on reports and telemetry');
  const before = JSON.stringify((await dropped.get()).values);
  await receiver.handle(reportsTopic('dev-gone'), Buffer.alloc(0), { retained: false });
  await receiver.handle(telemetryTopic('dev-gone'), Buffer.alloc(0), { retained: false });
  assert.equal(JSON.stringify((await dropped.get()).values), before, 'the clear, as the broker passes it on, is not a dropped message');
  assert.deepEqual(cleared.length, 2);
  // An empty message a device sends itself is still a malformed one, counted.
  await receiver.handle(reportsTopic('dev-live'), Buffer.alloc(0), { retained: false });
  assert.notEqual(JSON.stringify((await dropped.get()).values), before, 'a device\'s own empty report is dropped, counted');
});
