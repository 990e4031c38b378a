import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { Aedes } from 'aedes';
import { pino } from 'pino';
import { MqttLink, connectMqtt } from '../../agent/mqtt-link.ts';
import { buildAssignment } from '../../server/fleet/fleet-publisher.ts';
import type { FleetMessage } from '../../shared/protocol/parse-message.ts';
import { FLEET_COMMANDS_TOPIC, assignmentTopic } from '../../shared/protocol/topics.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

/**
 * A broker may refuse a subscription (SUBACK 0x80) and keep the connection: an ACL that has not
 * caught up with an enrollment yet, an auth plugin that was briefly unavailable. The agent must not
 * stay connected and deaf: it asks again, with a backoff, for the refused topics only, and then
 * receives its retained assignment. A real aedes broker refuses the first two attempts.
 */
test('a subscription the broker refuses is asked for again, with a backoff, until it is granted', async (t) => {
  let refusals = 2;
  const attempts: string[] = [];
  const aedes = await Aedes.createBroker({
    authorizeSubscribe: (_client, subscription, done) => {
      attempts.push(subscription.topic);
      if (subscription.topic === assignmentTopic('dev-a') && refusals > 0) {
        refusals--;
        return done(null, null);
      }
      done(null, subscription);
    },
  });
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

  const assignment = buildAssignment({ model: 'm', version: '1', sha256: 'a'.repeat(64), serverUrl: 'http://127.0.0.1:9', role: 'active' });
  await new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: 'publish', topic: assignmentTopic('dev-a'), payload: Buffer.from(JSON.stringify(assignment)), qos: 1, retain: true, dup: false }, (error) => (error ? reject(error) : resolve())),
  );

  const warnings: { msg: string; topics?: string[]; retryInMs?: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const received: FleetMessage[] = [];
  const link = new MqttLink({
    deviceId: 'dev-a',
    broker: { url: `mqtt://127.0.0.1:${(tcp.address() as AddressInfo).port}`, username: 'dev-a', password: 'x' },
    connector: connectMqtt,
    logger,
    clock: () => new Date(),
    onMessage: (message) => received.push(message),
    onDrop: () => {},
    onConnected: () => {},
    reconnectPeriodMs: 200,
  });
  link.start();
  t.after(() => link.stop());

  await waitFor(() => received.some((message) => message.kind === 'assignment'), 10_000, 'the retained assignment once the subscription is granted');
  const delivered = received.find((message) => message.kind === 'assignment')!;
  assert.equal(delivered.kind === 'assignment' && delivered.payload.id, assignment.id);
  assert.ok(link.connected, 'the same connection throughout');

  const refusedLogs = warnings.filter((warning) => warning.msg.includes('refused a subscription'));
  assert.deepEqual(refusedLogs.map((warning) => warning.topics), [[assignmentTopic('dev-a')], [assignmentTopic('dev-a')]], 'each refusal is logged with its topic');
  assert.deepEqual(refusedLogs.map((warning) => warning.retryInMs), [200, 400], 'the retry backs off');
  assert.equal(attempts.filter((topic) => topic === assignmentTopic('dev-a')).length, 3, 'refused twice, granted on the third attempt');
  assert.equal(attempts.filter((topic) => topic === FLEET_COMMANDS_TOPIC).length, 1, 'the granted topic is not asked for again');
});
