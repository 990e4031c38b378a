import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { ExternalBroker } from '../../server/broker/external-broker.ts';

test('stop() while start() waits on a broker that accepts TCP but never answers: start gives up at once, naming why', async (t) => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket)); // never sends a CONNACK
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => (sockets.forEach((socket) => socket.destroy()), silent.close(resolve))));
  const url = `mqtt://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const broker = new ExternalBroker({ url, server: { username: 'fleetprune-server', password: 'server-secret' }, credentials: { getDevice: async () => undefined, listDevices: async () => [] }, logger: pino({ level: 'silent' }) });
  // Stopped in cleanup too (bounded by an unref'd timer, which does not hold the process up; a second stop() returns at once): a client left connecting after a failed assertion keeps reconnecting, and the process alive.
  t.after(() => Promise.race([broker.stop(), delay(6000, undefined, { ref: false })]));

  const started = broker.start();
  started.catch(() => {});
  await delay(300);
  assert.ok(sockets.size > 0, 'the client connected over TCP');
  const stopping = broker.stop();
  const outcome = await Promise.race([started.then(() => 'started', (error: Error) => error.message), delay(5000, 'still waiting')]);
  assert.equal(outcome, `stopped before the MQTT broker at ${url} answered`);
  await stopping;
});
