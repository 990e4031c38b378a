import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { signAssignment } from '../../shared/protocol/message-signature.ts';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Aedes, type AedesOptions } from 'aedes';
import { pino } from 'pino';
import { MqttLink, connectMqtt } from '../../agent/mqtt-link.ts';
import { buildAssignment } from '../../server/fleet/fleet-publisher.ts';
import type { FleetMessage } from '../../shared/protocol/parse-message.ts';
import { FLEET_COMMANDS_TOPIC, assignmentTopic } from '../../shared/protocol/topics.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

/**
 * The agent's MQTT link against a real aedes broker whose hooks misbehave the way real brokers
 * can: a device must never stay connected and deaf to its retained assignment.
 */

const DEVICE = 'dev-a';
const TOPIC = assignmentTopic(DEVICE);

/** An aedes broker with `hooks` on an ephemeral port, holding a retained assignment for DEVICE. */
async function brokerWithAssignment(t: TestContext, hooks: Partial<AedesOptions>) {
  const aedes = await Aedes.createBroker(hooks);
  const sockets = new Set<Socket>();
  const tcp = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  });
  const assignment = signAssignment(DEVICE, buildAssignment({ model: 'm', version: '1', sha256: 'a'.repeat(64), serverUrl: 'http://127.0.0.1:9', role: 'active' }, 1), generateKeyPairSync('ed25519').privateKey);
  await new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: 'publish', topic: TOPIC, payload: Buffer.from(JSON.stringify(assignment)), qos: 1, retain: true, dup: false }, (error) => (error ? reject(error) : resolve())),
  );
  return { url: `mqtt://127.0.0.1:${(tcp.address() as AddressInfo).port}`, assignment };
}

/** DEVICE's link to `url`; what it logs at warn and the messages it passes on. */
function startLink(t: TestContext, url: string, options: { assignmentResyncMs?: number } = {}) {
  const warnings: { msg: string; topics?: string[]; retryInMs?: number }[] = [];
  const received: FleetMessage[] = [];
  const link = new MqttLink({
    deviceId: DEVICE,
    broker: { url, username: DEVICE, password: 'x' },
    connector: connectMqtt,
    logger: pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) }),
    clock: () => new Date(),
    onMessage: (message) => received.push(message),
    onDrop: () => {},
    onConnected: () => {},
    reconnectPeriodMs: 200,
    ...options,
  });
  link.start();
  t.after(() => link.stop());
  const assignments = () => received.filter((message) => message.kind === 'assignment').map((message) => message.payload.id);
  return { link, warnings, assignments };
}

test('a subscription the broker refuses is asked for again, with a backoff, until it is granted', async (t) => {
  let refusals = 2;
  const attempts: string[] = [];
  const { url, assignment } = await brokerWithAssignment(t, {
    authorizeSubscribe: (_client, subscription, done) => {
      attempts.push(subscription.topic);
      if (subscription.topic === TOPIC && refusals > 0) {
        refusals--;
        return done(null, null);
      }
      done(null, subscription);
    },
  });
  const { link, warnings, assignments } = startLink(t, url);

  await waitFor(() => assignments().length > 0, 10_000, 'the retained assignment once the subscription is granted');
  assert.deepEqual(assignments(), [assignment.id]);
  assert.ok(link.connected, 'the same connection throughout');
  const refusedLogs = warnings.filter((warning) => warning.msg.includes('refused a subscription'));
  assert.deepEqual(refusedLogs.map((warning) => warning.topics), [[TOPIC], [TOPIC]], 'each refusal is logged with its topic');
  assert.deepEqual(refusedLogs.map((warning) => warning.retryInMs), [200, 400], 'the retry backs off');
  assert.equal(attempts.filter((topic) => topic === TOPIC).length, 3, 'refused twice, granted on the third attempt');
  assert.equal(attempts.filter((topic) => topic === FLEET_COMMANDS_TOPIC).length, 1, 'the granted topic is not asked for again');
});

test('a retained assignment the broker withheld at subscribe time arrives with the periodic resubscription', async (t) => {
  // As Mosquitto does when its ACL has not caught up yet: the subscription is granted, the
  // retained message is not sent, and nothing sends it later.
  let withheld = 0;
  const { url, assignment } = await brokerWithAssignment(t, {
    authorizeForward: (_client, packet) => {
      if (packet.topic === TOPIC && withheld === 0) {
        withheld++;
        return null;
      }
      return packet;
    },
  });
  const { link, assignments } = startLink(t, url, { assignmentResyncMs: 500 });

  await waitFor(() => assignments().length > 0, 10_000, 'the withheld assignment, re-sent after a resubscription');
  assert.equal(withheld, 1, 'the first delivery was withheld');
  assert.equal(assignments()[0], assignment.id);
  assert.ok(link.connected, 'the same connection throughout');
  // Every resubscription brings the same retained assignment again; the agent handles an id once.
  await waitFor(() => assignments().length >= 2, 5_000, 'a second copy from the next resubscription');
  assert.deepEqual(new Set(assignments()), new Set([assignment.id]));
});

test('a broker that refuses the device (revoked) is asked again with a backoff, not every period for ever; a connect starts from the period again', async (t) => {
  let refuse = true;
  const attempts: number[] = [];
  const { url } = await brokerWithAssignment(t, {
    authenticate: (_client, _username, _password, done) => {
      attempts.push(Date.now());
      if (refuse) done(Object.assign(new Error('bad credentials'), { returnCode: 4 }) as never, false);
      else done(null, true);
    },
  });
  const errors: string[] = [];
  const link = new MqttLink({
    deviceId: DEVICE,
    broker: { url, username: DEVICE, password: 'x' },
    connector: connectMqtt,
    logger: pino({ level: 'error' }, { write: (line: string) => void errors.push(JSON.parse(line).msg) }),
    clock: () => new Date(),
    onMessage: () => {},
    onDrop: () => {},
    onConnected: () => {},
    reconnectPeriodMs: 100,
    random: () => 0.5, // no jitter: delays 100, 200, 400, 800, 1600 ms
  });
  link.start();
  t.after(() => link.stop());
  await new Promise((resolve) => setTimeout(resolve, 3000));
  // Every 100 ms would be some 30 attempts in 3 s; doubling makes 5 or 6.
  assert.ok(attempts.length >= 4 && attempts.length <= 7, `${attempts.length} connection attempts in 3 s`);
  const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
  assert.ok(gaps.at(-1)! > 3 * gaps[0]!, `the gaps grow: ${gaps.join(', ')} ms`);
  assert.ok(errors.length <= attempts.length, `one log line per attempt, no more (${errors.length} lines)`);

  refuse = false;
  await waitFor(() => link.connected, 10_000, 'connected once the broker accepts the device again');
});
