import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { Aedes } from 'aedes';
import { InMemoryFleet } from '../rollout/in-memory-fleet.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { registerVersion, testDevices } from './helpers/rollout-fixtures.ts';

const within = <T>(promise: Promise<T>, ms: number) => Promise.race([promise.then((value) => ({ value })), new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), ms))]);

/**
 * A direct assignment and a rollout's rollback take turns (they read what the other writes), but
 * only over what they write to the store: an assignment whose send waits on a broker that stopped
 * answering (its connection still open) must not hold up the operator's rollback.
 */
test('a rollback answers while a direct assignment waits on a stalled external broker', { timeout: 60_000 }, async (t) => {
  const aedes = await Aedes.createBroker({});
  const broker = net.createServer(aedes.handle);
  await new Promise<void>((resolve) => broker.listen(0, '127.0.0.1', resolve));
  // A proxy that can stop passing bytes while keeping both connections open.
  let frozen = false;
  const sockets: net.Socket[] = [];
  const proxy = net.createServer((inbound) => {
    const outbound = net.connect((broker.address() as net.AddressInfo).port, '127.0.0.1');
    sockets.push(inbound, outbound);
    inbound.on('data', (data) => frozen || outbound.write(data));
    outbound.on('data', (data) => frozen || inbound.write(data));
    for (const [a, b] of [[inbound, outbound], [outbound, inbound]] as const) {
      a.on('error', () => {});
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    proxy.close();
    broker.close();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  });

  const fleet = new InMemoryFleet(testDevices(2));
  const base = await startTestServer(t, { config: { mqttUrl: `mqtt://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`, mqttPassword: 'broker-password' }, start: { testOnlyRolloutFleet: { fleet } } });
  if (!base) return;
  const { server } = base;
  const { store } = server.ctx;
  await registerVersion(store, 'wine', '1');
  await registerVersion(store, 'wine', '2');
  await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
  await registerVersion(store, 'wine', '3', server.ctx.signingKey.privateKey);
  const request = (method: string, path: string, json?: unknown) => base.request(method, path, { token: ADMIN_TOKEN, json });
  assert.equal((await request('POST', '/api/devices', { id: 'real-01', labels: {} })).status, 201);
  const started = await request('POST', '/api/rollouts', { model: 'wine', candidateVersion: '2', steps: [{ pause: {} }] });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  const assign = () => request('POST', '/api/assignments', { model: 'wine', version: '3', role: 'active', deviceIds: ['real-01'] });
  const before = await within(assign(), 10_000);
  assert.notEqual(before, 'late', 'with the broker answering, an assignment is quick');

  frozen = true;
  const stuck = assign();
  stuck.catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 500));
  const rollback = await within(request('POST', `/api/rollouts/${id}/rollback`), 8_000);
  assert.notEqual(rollback, 'late', 'the rollback answered');
  assert.equal((rollback as { value: Response }).value.status, 200);
  assert.equal(await within(stuck, 100), 'late', 'the assignment was still waiting on the broker');
  frozen = false;
  for (const socket of sockets) socket.destroy(); // the server reconnects, and the assignment gets out
});
