import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { DEFAULT_SERVER_USERNAME, type CredentialStore } from '../../server/broker/credential-store.ts';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { DEVICE_MAX_PACKET_BYTES } from '../../shared/protocol/limits.ts';
import { ALL_DEVICES_FILTER, reportsTopic } from '../../shared/protocol/topics.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { closedWithin, connectPacket, rawConnect, remainingLength, writeOrClosed } from './raw-mqtt.ts';

const MiB = 1024 * 1024;

async function startBroker(t: TestContext, options: { connectTimeoutMs?: number; slowLookups?: boolean } = {}) {
  const credentials = new InMemoryCredentialStore();
  // A slow credentials read (a busy database) keeps aedes from reading the connection meanwhile.
  const store: CredentialStore = options.slowLookups
    ? { getDevice: async (deviceId) => { await new Promise((resolve) => setTimeout(resolve, 200)); return credentials.getDevice(deviceId); }, listDevices: () => credentials.listDevices() }
    : credentials;
  const registry = new Registry();
  const denied = new Counter({ name: 'denied_total', help: 'refusals', labelNames: ['reason'] as const, registers: [registry] });
  const broker = new EmbeddedBroker({ port: 0, credentials: store, server: { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, logger: testLogger, denied, connectTimeoutMs: options.connectTimeoutMs });
  const reports: string[] = [];
  await broker.subscribe(ALL_DEVICES_FILTER('reports'), async (_topic, payload) => {
    reports.push(payload.toString());
  });
  await broker.start();
  t.after(() => broker.stop());
  const deniedCount = async (reason: string) => (await denied.get()).values.find((value) => value.labels.reason === reason)?.value ?? 0;
  return { broker, credentials, reports, deniedCount };
}

/** A device still gets through: connects, publishes a report, and the server receives it. */
async function assertDeviceWorks(harness: Awaited<ReturnType<typeof startBroker>>, deviceId: string): Promise<void> {
  const secret = await harness.credentials.enroll(deviceId);
  const client = await connectClient(harness.broker.url, { clientId: deviceId, username: deviceId, password: secret });
  try {
    const before = harness.reports.length;
    await client.publishAsync(reportsTopic(deviceId), Buffer.from(`{"from":"${deviceId}"}`), { qos: 1 });
    await waitFor(() => harness.reports.length > before, 5000, `${deviceId}'s report`);
  } finally {
    await client.endAsync(true);
  }
}

test('embedded broker: a connection declaring a 200 MB CONNECT is closed at its header, before the broker buffers it; devices keep working', async (t) => {
  const harness = await startBroker(t);
  const chunk = Buffer.alloc(MiB, 0x41);
  const before = process.memoryUsage();
  const connection = await rawConnect(harness.broker.url);
  // No credentials: just a CONNECT header announcing 200 MB, then its "body" a MiB at a time.
  const started = Date.now();
  let sent = 0;
  if (await writeOrClosed(connection, Buffer.concat([Buffer.from([0x10]), remainingLength(200_000_000)]))) {
    while (sent < 100 && (await writeOrClosed(connection, chunk))) sent++;
  }
  const after = process.memoryUsage();
  assert.equal(await closedWithin(connection, 3000), true, `the broker closes the connection (still open after ${Date.now() - started} ms, ${sent} MiB sent)`);
  // What the client got in before the close is what the kernel's socket buffers hold, a few MiB on loopback.
  assert.ok(sent < 50, `the connection closed early, not after ${sent} MiB`);
  const grewMiB = (after.arrayBuffers - before.arrayBuffers) / MiB;
  t.diagnostic(`${sent} MiB sent before the close; array buffers grew ${grewMiB.toFixed(1)} MiB`);
  assert.ok(grewMiB < 50, `the broker did not buffer the packet (buffers grew ${grewMiB.toFixed(0)} MiB while ${sent} MiB were sent)`);
  assert.equal(await harness.deniedCount('too-large'), 1);
  assert.equal(harness.broker.connectedClients, 0);
  await assertDeviceWorks(harness, 'dev-ok');
});

test('embedded broker: a device is disconnected at the header of a 2 MiB publish, before its body arrives', async (t) => {
  const harness = await startBroker(t);
  const secret = await harness.credentials.enroll('dev-big');
  const connection = await rawConnect(harness.broker.url);
  assert.ok(await writeOrClosed(connection, connectPacket('dev-big', 'dev-big', secret)));
  await waitFor(() => connection.received().length >= 4, 5000, 'the CONNACK');
  assert.deepEqual([...connection.received().subarray(0, 4)], [0x20, 2, 0, 0], 'connected');
  // A QoS 0 PUBLISH declaring a 2 MiB payload, of which only the topic and 1 KiB are sent.
  const topic = Buffer.from(reportsTopic('dev-big'));
  const topicField = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic]);
  const header = Buffer.concat([Buffer.from([0x30]), remainingLength(topicField.length + 2 * MiB)]);
  await writeOrClosed(connection, Buffer.concat([header, topicField, Buffer.alloc(1024, 0x42)]));
  assert.equal(await closedWithin(connection, 3000), true, 'disconnected without waiting for the rest of the packet');
  assert.equal(await harness.deniedCount('too-large'), 1);

  // A real client sending the whole 2 MiB is put out as well, and nothing reaches the server.
  const client = await connectClient(harness.broker.url, { clientId: 'dev-big', username: 'dev-big', password: secret });
  client.publish(reportsTopic('dev-big'), Buffer.alloc(2 * MiB, 0x43), { qos: 1 }, () => {});
  await waitFor(() => !client.connected, 5000, 'the mqtt.js client to be disconnected');
  await client.endAsync(true);
  assert.deepEqual(harness.reports, []);

  await assertDeviceWorks(harness, 'dev-ok');
});

test('embedded broker: a packet of exactly the limit still gets through the size check', async (t) => {
  const harness = await startBroker(t);
  const secret = await harness.credentials.enroll('dev-edge');
  const connection = await rawConnect(harness.broker.url);
  t.after(() => connection.socket.destroy());
  await writeOrClosed(connection, connectPacket('dev-edge', 'dev-edge', secret));
  await waitFor(() => connection.received().length >= 4, 5000, 'the CONNACK');
  const topic = Buffer.from(reportsTopic('dev-edge'));
  const topicField = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic]);
  // Remaining length = DEVICE_MAX_PACKET_BYTES (a device's limit) exactly, sent in pieces; a PINGREQ after it must be answered.
  const payload = Buffer.alloc(DEVICE_MAX_PACKET_BYTES - topicField.length, 0x44);
  const packet = Buffer.concat([Buffer.from([0x30]), remainingLength(DEVICE_MAX_PACKET_BYTES), topicField, payload, Buffer.from([0xc0, 0])]);
  for (let offset = 0; offset < packet.length; offset += 100_003) assert.ok(await writeOrClosed(connection, packet.subarray(offset, offset + 100_003)));
  await waitFor(() => connection.received().subarray(4).includes(Buffer.from([0xd0, 0])), 5000, 'the PINGRESP');
  assert.equal(connection.isClosed(), false);
  assert.equal(await harness.deniedCount('too-large'), 0);
});

test('embedded broker: a malformed remaining length (a 5th length byte) closes the connection', async (t) => {
  const harness = await startBroker(t);
  const connection = await rawConnect(harness.broker.url);
  await writeOrClosed(connection, Buffer.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]));
  assert.equal(await closedWithin(connection, 3000), true);
  await assertDeviceWorks(harness, 'dev-ok');
});

test('embedded broker: a connection that never completes its CONNECT is dropped after the connect timeout', async (t) => {
  const harness = await startBroker(t, { connectTimeoutMs: 300 });
  const connection = await rawConnect(harness.broker.url);
  const started = Date.now();
  // The first bytes of a valid CONNECT, then nothing.
  await writeOrClosed(connection, connectPacket('dev-slow', 'dev-slow', 'secret').subarray(0, 10));
  assert.equal(await closedWithin(connection, 3000), true, 'dropped');
  assert.ok(Date.now() - started >= 250, 'not before the timeout');
});

test('embedded broker: packets a client sends just before it closes are all read, however busy the broker was', async (t) => {
  const harness = await startBroker(t, { slowLookups: true });
  const secret = await harness.credentials.enroll('dev-brief');
  const connection = await rawConnect(harness.broker.url);
  // MQTT lets a client send on without waiting for the CONNACK: a PUBLISH, a DISCONNECT, then its FIN,
  // all arriving while the broker still checks the CONNECT. The socket's end must wait for them.
  await writeOrClosed(connection, connectPacket('dev-brief', 'dev-brief', secret));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const topic = Buffer.from(reportsTopic('dev-brief'));
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from('{"last":"words"}')]);
  connection.socket.end(Buffer.concat([Buffer.from([0x30]), remainingLength(body.length), body, Buffer.from([0xe0, 0])]));
  await waitFor(() => harness.reports.length === 1, 5000, 'the report sent before the close');
  assert.deepEqual(harness.reports, ['{"last":"words"}']);
});
