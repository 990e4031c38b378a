import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { BROKER_MAX_PACKET_BYTES, DEVICE_MAX_PACKET_BYTES } from '../../shared/protocol/limits.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { ALL_DEVICES_FILTER, assignmentTopic, reportsTopic } from '../../shared/protocol/topics.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { harnessFor } from './broker-harnesses.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { closedWithin, rawConnect, remainingLength, writeOrClosed, type RawConnection } from './raw-mqtt.ts';

const ACCESS = { url: 'http://127.0.0.1:9', token: 't', publicKey: generateKeyPairSync('ed25519').publicKey };

function utf8Field(text: string): Buffer {
  const bytes = Buffer.from(text);
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

/** A CONNECT with a persistent session (clean session false): what aedes keeps for it outlives the connection. */
function persistentConnect(deviceId: string, password: string): Buffer {
  const body = Buffer.concat([utf8Field('MQTT'), Buffer.from([4, 0xc0, 0, 60]), utf8Field(deviceId), utf8Field(deviceId), utf8Field(password)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

function publishPacket(topic: string, payload: Buffer, qos: 0 | 1 | 2, messageId: number): Buffer {
  const body = Buffer.concat([utf8Field(topic), qos > 0 ? Buffer.from([messageId >> 8, messageId & 0xff]) : Buffer.alloc(0), payload]);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), remainingLength(body.length), body]);
}

/** The MQTT packet types (high nibble of each fixed header) a connection received, in order. */
function packetTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    types.push(bytes[i]! >> 4);
    let length = 0;
    let multiplier = 1;
    let byte: number;
    do {
      byte = bytes[++i]!;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
    } while (byte & 0x80 && i < bytes.length);
    i += 1 + length;
  }
  return types;
}

function validReport(deviceId: string): string {
  return JSON.stringify({
    schema: 1, id: newMessageId(), kind: 'assignment', deviceId, createdAt: new Date().toISOString(), assignmentId: newMessageId(),
    outcome: 'refused', role: 'candidate', model: 'm', version: '1', sha256: 'c'.repeat(64), reason: 'test',
  });
}

async function connected(url: string, deviceId: string, password: string): Promise<RawConnection> {
  const connection = await rawConnect(url);
  assert.equal(await writeOrClosed(connection, persistentConnect(deviceId, password)), true, 'the CONNECT was written');
  await waitFor(() => connection.received().length >= 4 || connection.isClosed(), 5000, 'the CONNACK');
  assert.deepEqual([...connection.received().subarray(0, 4)], [0x20, 2, 0, 0], `${deviceId} connected`);
  return connection;
}

test('embedded: a device\'s QoS 2 publish is refused before the broker stores it (no PUBREC, disconnected, nothing delivered); QoS 1 keeps working', async (t) => {
  const harness = await harnessFor(t, 'embedded');
  assert.ok(harness, 'the embedded harness starts');
  const config = await harness.enroll('dev-q2', ACCESS);
  const connection = await connected(harness.broker.url, 'dev-q2', config.broker.password);
  // Valid reports at QoS 2, never followed by a PUBREL: each would wait in the broker's store.
  const packets = Array.from({ length: 5 }, (_, i) => publishPacket(reportsTopic('dev-q2'), Buffer.from(validReport('dev-q2')), 2, i + 1));
  await writeOrClosed(connection, Buffer.concat(packets));
  assert.equal(await closedWithin(connection, 5000), true, 'the broker closes a connection publishing at QoS 2');
  const types = packetTypes(connection.received().subarray(4));
  assert.deepEqual(types.filter((type) => type === 5), [], `no PUBREC: nothing was stored for a PUBREL (received packet types ${JSON.stringify(types)})`);

  // A QoS 1 report from the same device still gets through; the QoS 2 ones never did.
  const client = await connectClient(harness.broker.url, { clientId: 'dev-q2', username: 'dev-q2', password: config.broker.password });
  try {
    await client.publishAsync(reportsTopic('dev-q2'), Buffer.from(validReport('dev-q2')), { qos: 1 });
    await waitFor(() => harness.ingest.reports.length >= 1, 5000, 'the QoS 1 report');
  } finally {
    await client.endAsync(true);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(harness.ingest.reports.length, 1, 'only the QoS 1 report reached the server');
});

test('mosquitto: the shipped configuration (max_qos 1) disconnects a device publishing at QoS 2 without a PUBREC; QoS 1 works', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const mosquitto = await MosquittoProcess.create(binary);
  t.after(() => mosquitto.stop());
  const credentials = new InMemoryCredentialStore();
  const secret = await credentials.enroll('dev-q2');
  // The device is in the files Mosquitto starts with. Mosquitto 2.0.11 forgets a listener's max_qos
  // when it reloads its configuration (SIGHUP, which the server sends on each enrollment): see deploy/mosquitto/README.md.
  await writeMosquittoAuthFiles(mosquitto.authDir, { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, credentials);
  await mosquitto.start();
  const connection = await connected(mosquitto.url, 'dev-q2', secret);
  await writeOrClosed(connection, publishPacket(reportsTopic('dev-q2'), Buffer.from(validReport('dev-q2')), 2, 1));
  assert.equal(await closedWithin(connection, 5000), true, 'Mosquitto closes a connection publishing at QoS 2');
  const types = packetTypes(connection.received().subarray(4));
  assert.deepEqual(types.filter((type) => type === 5), [], `no PUBREC (received packet types ${JSON.stringify(types)})`);
  const client = await connectClient(mosquitto.url, { clientId: 'dev-q2', username: 'dev-q2', password: secret });
  try {
    const granted = await client.subscribeAsync(assignmentTopic('dev-q2'), { qos: 2 });
    assert.equal(granted[0]?.qos, 1, 'a QoS 2 subscription is granted at QoS 1');
    await client.publishAsync(reportsTopic('dev-q2'), Buffer.from(validReport('dev-q2')), { qos: 1 });
  } finally {
    await client.endAsync(true);
  }
});

async function startEmbedded(t: import('node:test').TestContext) {
  const credentials = new InMemoryCredentialStore();
  const registry = new Registry();
  const denied = new Counter({ name: 'denied_total', help: 'refusals', labelNames: ['reason'] as const, registers: [registry] });
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') };
  const broker = new EmbeddedBroker({ port: 0, credentials, server, logger: testLogger, denied });
  const reports: Buffer[] = [];
  await broker.subscribe(ALL_DEVICES_FILTER('reports'), async (_topic, payload) => void reports.push(payload));
  await broker.start();
  t.after(() => broker.stop());
  const deniedCount = async (reason: string) => (await denied.get()).values.find((value) => value.labels.reason === reason)?.value ?? 0;
  return { broker, credentials, server, reports, deniedCount };
}

test('embedded broker: a QoS 2 publish is counted as denied (qos2)', async (t) => {
  const harness = await startEmbedded(t);
  const secret = await harness.credentials.enroll('dev-q2');
  const connection = await connected(harness.broker.url, 'dev-q2', secret);
  await writeOrClosed(connection, publishPacket(reportsTopic('dev-q2'), Buffer.from('{}'), 2, 7));
  assert.equal(await closedWithin(connection, 5000), true, 'disconnected');
  assert.equal(await harness.deniedCount('qos2'), 1);
  assert.deepEqual(harness.reports, [], 'the QoS 2 message was not delivered');
});

test('embedded broker: a device packet over DEVICE_MAX_PACKET_BYTES is refused at its header; one of exactly that size passes; the server may send more', async (t) => {
  const harness = await startEmbedded(t);
  const secret = await harness.credentials.enroll('dev-size');
  const topic = reportsTopic('dev-size');
  const topicField = utf8Field(topic);

  const edge = await connected(harness.broker.url, 'dev-size', secret);
  t.after(() => edge.socket.destroy());
  // QoS 0, remaining length exactly the limit, then a PINGREQ that must be answered.
  const payload = Buffer.alloc(DEVICE_MAX_PACKET_BYTES - topicField.length, 0x20);
  await writeOrClosed(edge, Buffer.concat([Buffer.from([0x30]), remainingLength(DEVICE_MAX_PACKET_BYTES), topicField, payload, Buffer.from([0xc0, 0])]));
  await waitFor(() => edge.received().subarray(4).includes(Buffer.from([0xd0, 0])) || edge.isClosed(), 5000, 'the PINGRESP');
  assert.equal(edge.isClosed(), false, 'a packet of exactly the device limit is read');
  edge.socket.destroy();
  await edge.closed;

  const over = await connected(harness.broker.url, 'dev-size', secret);
  // Only the header and topic of a packet one byte over the limit: refused before the body arrives.
  await writeOrClosed(over, Buffer.concat([Buffer.from([0x30]), remainingLength(DEVICE_MAX_PACKET_BYTES + 1), topicField]));
  assert.equal(await closedWithin(over, 3000), true, 'disconnected at the header');
  assert.equal(await harness.deniedCount('too-large'), 1);

  // The server's own connection keeps the broker-wide limit: a 200 KB message of its gets through.
  const server = await connectClient(harness.broker.url, { clientId: 'server-tcp', username: harness.server.username, password: harness.server.password });
  try {
    assert.ok(200_000 < BROKER_MAX_PACKET_BYTES && 200_000 > DEVICE_MAX_PACKET_BYTES, 'the size lies between the two limits');
    await server.publishAsync(reportsTopic('dev-size'), Buffer.alloc(200_000, 0x21), { qos: 1 });
    await waitFor(() => harness.reports.some((report) => report.length === 200_000), 5000, 'the server\'s 200 KB message');
  } finally {
    await server.endAsync(true);
  }
});

test('embedded broker: revoking a device drops the messages queued in its persistent session', async (t) => {
  const harness = await startEmbedded(t);
  const secret = await harness.credentials.enroll('dev-gone');
  const device = await connectClient(harness.broker.url, { clientId: 'dev-gone', username: 'dev-gone', password: secret, clean: false });
  await device.subscribeAsync(assignmentTopic('dev-gone'), { qos: 1 });
  await device.endAsync(true);
  for (let i = 0; i < 5; i++) await harness.broker.publish(assignmentTopic('dev-gone'), Buffer.from(`{"n":${i}}`), { qos: 1, retain: false });
  await waitFor(async () => (await harness.broker.queuedMessages('dev-gone')) === 5, 5000, 'five messages queued for the offline device');
  harness.credentials.revoke('dev-gone');
  await harness.broker.credentialsChanged();
  assert.equal(await harness.broker.queuedMessages('dev-gone'), 0, 'nothing stays queued for a revoked device');
  assert.deepEqual(await harness.broker.sessionTopics('dev-gone'), [], 'nor its subscriptions');
});

/** A logger keeping each line's level, message and serialized size, as pino would write it. */
function capturingLogger() {
  const lines: { level: string; msg: string; bytes: number }[] = [];
  const record = (level: string) => (fields: object | string, msg?: string) => {
    const text = typeof fields === 'string' ? fields : msg ?? '';
    lines.push({ level, msg: text, bytes: JSON.stringify(typeof fields === 'string' ? { msg: fields } : { ...fields, msg }).length });
  };
  const logger = { warn: record('warn'), info: record('info'), error: record('error'), debug: record('debug'), trace: () => {}, fatal: record('fatal') };
  return { logger: logger as unknown as import('../../shared/util/log.ts').Logger, lines };
}

test('embedded broker: refused subscriptions and publishes with 60 KB topics write a bounded log (one short line per device, the rest counted); repeated refused filters disconnect', async (t) => {
  const { logger, lines } = capturingLogger();
  const credentials = new InMemoryCredentialStore();
  const registry = new Registry();
  const denied = new Counter({ name: 'denied_total', help: 'refusals', labelNames: ['reason'] as const, registers: [registry] });
  const broker = new EmbeddedBroker({ port: 0, credentials, server: { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, logger, denied });
  await broker.start();
  t.after(() => broker.stop());
  const deniedCount = async (reason: string) => (await denied.get()).values.find((value) => value.labels.reason === reason)?.value ?? 0;
  const secret = await credentials.enroll('dev-noisy');

  // SUBSCRIBEs of one filter each under another device's topics, 60 KB long (a packet of several
  // would be over the device packet limit, and closed for that).
  const subscriber = await connectClient(broker.url, { clientId: 'dev-noisy', username: 'dev-noisy', password: secret });
  t.after(() => subscriber.endAsync(true));
  let closed = false;
  subscriber.on('close', () => (closed = true));
  for (let round = 0; round < 30 && !closed; round++) {
    const filters = { [`fleetprune/v1/devices/dev-other/${round}${'y'.repeat(60_000)}`]: { qos: 1 as const } };
    await Promise.race([subscriber.subscribeAsync(filters).catch(() => undefined), new Promise<void>((resolve) => subscriber.once('close', () => resolve()))]);
  }
  const refusedFilters = await deniedCount('subscribe-acl');

  // 20 connections each publishing once outside the device's topics (each is closed for it).
  for (let i = 0; i < 20; i++) {
    const publisher = await connectClient(broker.url, { clientId: 'dev-noisy', username: 'dev-noisy', password: secret });
    const gone = new Promise<void>((resolve) => publisher.once('close', () => resolve()));
    publisher.publish(`fleetprune/v1/devices/dev-other/${'x'.repeat(60_000)}`, 'x', { qos: 0 });
    await gone;
    await publisher.endAsync(true);
  }
  assert.equal(await deniedCount('publish-acl'), 20, 'every refused publish is counted');

  const refusals = lines.filter((line) => line.level === 'warn' && /^refused (subscription|publish)/.test(line.msg));
  assert.equal(refusals.length, 1, `one warn line for the device within the minute, not one per refusal (${refusals.length})`);
  const bytes = lines.reduce((sum, line) => sum + line.bytes, 0);
  assert.ok(bytes < 10_000, `the log stays small (${bytes} bytes for ${refusedFilters + 20} refusals of 60 KB topics)`);
  assert.equal(closed, true, 'the device refusing filter after filter was disconnected');
  assert.equal(refusedFilters, 16, 'every refused filter up to the disconnect is counted');
  assert.equal(await deniedCount('too-large'), 0, 'no packet was over the size limit');
});
