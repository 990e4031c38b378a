import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { test, type TestContext } from 'node:test';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { assignmentTopic } from '../../shared/protocol/topics.ts';
import { UserError } from '../../shared/util/errors.ts';
import { engineMissing, tcpReachable } from '../helpers/engines.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';

/**
 * A Mosquitto of its own, started on the files the server writes: the server identity, and the
 * device `deviceId` enrolled (its secret) when given. Null (the test skipped) without the binary.
 */
async function mosquittoWithDevice(t: TestContext, deviceId?: string) {
  const binary = mosquittoBinary();
  if (!binary) {
    engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH');
    return null;
  }
  const mosquitto = await MosquittoProcess.create(binary);
  const credentials = new InMemoryCredentialStore();
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') };
  const secret = deviceId === undefined ? '' : await credentials.enroll(deviceId);
  await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
  await mosquitto.start();
  return { mosquitto, credentials, server, secret };
}

test('external broker: an assignment made while Mosquitto is down does not wait for it; after it restarts without its retained messages, the server publishes the retained assignments again', async (t) => {
  const started = await mosquittoWithDevice(t, 'osaka-1');
  if (!started) return;
  const { mosquitto, credentials, server, secret } = started;
  // What the server's AssignmentPublisher.republishRetained does: the table's retained assignment, published retained.
  let retained = Buffer.from('{"the":"first assignment"}');
  let republished = 0;
  const publishRetained = async () => {
    republished++;
    await broker.publish(assignmentTopic('osaka-1'), retained, { qos: 1, retain: true });
  };
  const broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger, onReconnect: publishRetained });
  t.after(async () => {
    await broker.stop();
    await mosquitto.stop();
  });
  await broker.start();
  await broker.publish(assignmentTopic('osaka-1'), retained, { qos: 1, retain: true });
  assert.equal(republished, 0, 'the first connect is the start-up republish\'s job');

  // Mosquitto crashes (its retained messages since the last autosave are gone) and comes back.
  process.kill(mosquitto.pid!, 'SIGKILL');
  await waitFor(async () => !(await tcpReachable('127.0.0.1', mosquitto.port, 200)), 10_000, 'mosquitto down');
  await waitFor(() => !broker.connected, 10_000, 'the server to notice');
  // An assignment made meanwhile (recorded in the table, then published) does not wait for the broker to come back.
  retained = Buffer.from('{"the":"assignment made while the broker was down"}');
  const sent = await Promise.race([
    broker.publish(assignmentTopic('osaka-1'), retained, { qos: 1, retain: true }).then(() => 'resolved'),
    new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting for the broker')),
  ]);
  assert.equal(sent, 'resolved');
  // A fleet command (not retained) is refused at once, not held (with every send behind it) until the broker is back.
  const command = await Promise.race([
    broker.publish('fleetprune/v1/commands', Buffer.from('{}'), { qos: 1, retain: false }).then(
      () => 'resolved',
      (error: Error) => error.message,
    ),
    new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting for the broker')),
  ]);
  assert.equal(command, 'the external broker is not connected, so the message was not sent; it is retried once the connection is back');
  await mosquitto.start();

  // The device connects again and still gets its assignment (retained, or live once the server is back).
  const device = await connectClient(mosquitto.url, { clientId: 'osaka-1', username: 'osaka-1', password: secret });
  t.after(() => device.endAsync(true));
  const received: Buffer[] = [];
  device.on('message', (_topic, payload) => received.push(payload));
  await device.subscribeAsync(assignmentTopic('osaka-1'), { qos: 1 });
  await waitFor(() => received.length > 0, 15_000, 'the retained assignment at the device');
  assert.deepEqual(received[0], retained);
});

test('external broker: a retained publish to a broker that stopped answering (hung, half-open) goes on after the acknowledgement wait, and reaches the broker once it answers', async (t) => {
  const started = await mosquittoWithDevice(t, 'osaka-2');
  if (!started) return;
  const { mosquitto, credentials, server, secret } = started;
  const broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger, onReconnect: async () => {}, retainedAckWaitMs: 500 });
  t.after(async () => {
    try {
      process.kill(mosquitto.pid!, 'SIGCONT');
    } catch {
      // gone already
    }
    await broker.stop();
    await mosquitto.stop();
  });
  await broker.start();

  // SIGSTOP: the connection stays up, and nothing is acknowledged. The publish waited until the broker woke (minutes, in the field).
  process.kill(mosquitto.pid!, 'SIGSTOP');
  const assignment = Buffer.from('{"the":"assignment made while the broker hung"}');
  const sent = await Promise.race([
    broker.publish(assignmentTopic('osaka-2'), assignment, { qos: 1, retain: true }).then(() => 'resolved'),
    new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting for the broker')),
  ]);
  assert.equal(sent, 'resolved');
  assert.ok(broker.connected, 'the connection still looked up: the disconnected path did not apply');

  process.kill(mosquitto.pid!, 'SIGCONT');
  const device = await connectClient(mosquitto.url, { clientId: 'osaka-2', username: 'osaka-2', password: secret });
  t.after(() => device.endAsync(true));
  const received: Buffer[] = [];
  device.on('message', (_topic, payload) => received.push(payload));
  await device.subscribeAsync(assignmentTopic('osaka-2'), { qos: 1 });
  await waitFor(() => received.length > 0, 15_000, 'the retained assignment at the device');
  assert.deepEqual(received[0], assignment);
});

test('external broker: while Mosquitto is away the reconnects (one a second) log their error once, not once each; a reconnect starts over', async (t) => {
  const started = await mosquittoWithDevice(t);
  if (!started) return;
  const { mosquitto, credentials, server } = started;
  const { logger, lines } = recordingLogger();
  const broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger, onReconnect: async () => {} });
  t.after(async () => {
    await broker.stop();
    await mosquitto.stop();
  });
  await broker.start();
  const errorLines = () => lines.filter((line) => line.msg === 'external broker connection error');

  const kill = async () => {
    process.kill(mosquitto.pid!, 'SIGKILL');
    await waitFor(async () => !(await tcpReachable('127.0.0.1', mosquitto.port, 200)), 10_000, 'mosquitto down');
  };
  await kill();
  await waitFor(() => !broker.connected, 10_000, 'the server to notice');
  // At least three reconnects, each refused (a line per second before).
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const duringOutage = errorLines();
  // Started again before anything is asserted: MosquittoProcess.stop() waits for a process it did not see exit.
  await mosquitto.start();
  assert.equal(duringOutage.length, 1, JSON.stringify(duringOutage));
  assert.match(duringOutage[0]!.err, /ECONNREFUSED/);

  await waitFor(() => broker.connected, 15_000, 'reconnected');
  await kill();
  const nextOutage = await waitFor(() => errorLines().length === 2, 10_000, 'the next outage logged at once').then(() => 'logged', (error: Error) => error.message);
  await mosquitto.start();
  assert.equal(nextOutage, 'logged');
});

test('external broker: a login the broker refuses after the start (its password file changed) does not end the reconnects: once the file is right again, the server connects and publishes', async (t) => {
  const started = await mosquittoWithDevice(t, 'osaka-1');
  if (!started) return;
  const { mosquitto, credentials, server } = started;
  const { logger, lines } = recordingLogger();
  let reconnects = 0;
  const broker = new ExternalBroker({ url: mosquitto.url, server, credentials, logger, onReconnect: async () => void reconnects++ });
  t.after(async () => {
    await broker.stop();
    await mosquitto.stop();
  });
  await broker.start();

  // The broker comes back on a password file where the server identity has another password.
  await writeMosquittoAuthFiles(mosquitto.authDir, { ...server, password: randomBytes(18).toString('base64url') }, credentials);
  process.kill(mosquitto.pid!, 'SIGKILL');
  await waitFor(async () => !(await tcpReachable('127.0.0.1', mosquitto.port, 200)), 10_000, 'mosquitto down');
  await mosquitto.start();
  const refusal = () => lines.find((line) => line.msg === 'external broker connection error' && /Not authorized/.test(line.err));
  await waitFor(() => refusal() !== undefined, 15_000, 'the refused login logged');
  assert.match(refusal()!.err, /the broker refused the server identity fleetprune-server: FLEETPRUNE_MQTT_PASSWORD must be its password/);
  assert.equal(broker.connected, false);

  // Put right (a reload): the reconnects, still going, get in.
  await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
  await mosquitto.reload();
  await waitFor(() => broker.connected, 15_000, 'reconnected after the password file was put right');
  await waitFor(() => reconnects === 1, 5_000, 'the retained assignments published again');
  const device = await connectClient(mosquitto.url, { username: 'osaka-1', password: started.secret, clientId: 'osaka-1' });
  t.after(() => device.endAsync());
  const received = new Promise<string>((resolve) => device.on('message', (_topic, payload) => resolve(payload.toString())));
  await device.subscribeAsync(assignmentTopic('osaka-1'), { qos: 1 });
  await broker.publish(assignmentTopic('osaka-1'), Buffer.from('{"a":"revert"}'), { qos: 1, retain: true });
  assert.equal(await received, '{"a":"revert"}');
});

test('external broker: a --mosquitto-dir the server cannot write fails the start naming that directory, not the broker URL', async (t) => {
  const credentials = new InMemoryCredentialStore();
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') };
  // Never reached: the files come first.
  const broker = new ExternalBroker({ url: 'mqtt://127.0.0.1:1', server, credentials, logger: testLogger, mosquittoAuth: { dir: '/dev/null/auth', reload: async () => {} } });
  t.after(() => broker.stop());
  const error = await broker.start().then(() => undefined, (caught: unknown) => caught);
  assert.ok(error instanceof UserError, `a UserError (the server prints it as is, not as an --mqtt-url problem): ${String(error)}`);
  assert.match(error.message, /^cannot write Mosquitto's password and ACL files into \/dev\/null\/auth \(ENOTDIR/);
});

test('external broker: --mqtt-url at a port that is not MQTT fails the connection saying so, rather than retrying it silently for ever (one that drops the connection) or with a parser error alone (an HTTP server)', async (t) => {
  const dropping = createServer((socket) => socket.destroy());
  const web = createHttpServer((_request, response) => response.end('not mqtt'));
  for (const server of [dropping, web]) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => server.close(resolve)));
  }
  const attempt = async (port: number) => {
    const broker = new ExternalBroker({ url: `mqtt://127.0.0.1:${port}`, server: { username: DEFAULT_SERVER_USERNAME, password: 'x' }, credentials: new InMemoryCredentialStore(), logger: testLogger });
    try {
      return await Promise.race([broker.start().then(() => 'connected', (error: Error) => error.message), new Promise((resolve) => setTimeout(resolve, 8000, 'still trying'))]);
    } finally {
      await broker.stop();
    }
  };
  const portOf = (server: { address(): unknown }) => (server.address() as { port: number }).port;
  assert.equal(await attempt(portOf(dropping)), `cannot connect to the MQTT broker at mqtt://127.0.0.1:${portOf(dropping)}: it closed the connection without answering the MQTT CONNECT (is it an MQTT broker, and this its port?)`);
  assert.match(String(await attempt(portOf(web))), /: what answers there does not speak MQTT: is it the broker's port\?\)$|\(what answers there does not speak MQTT: is it the broker's port\?\)$/);
});
