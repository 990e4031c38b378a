import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
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

test('external broker: an assignment made while Mosquitto is down does not wait for it; after it restarts without its retained messages, the server publishes the retained assignments again', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH');
  const mosquitto = await MosquittoProcess.create(binary);
  const credentials = new InMemoryCredentialStore();
  const server = { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') };
  const secret = await credentials.enroll('osaka-1');
  await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
  await mosquitto.start();
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
