import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { pino } from 'pino';
import { PostgresLeadership } from '../../server/rollout/leader-election.ts';
import { PostgresEngine } from '../../server/store/postgres-engine.ts';
import { openStore } from '../../server/store/open-store.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';

test('PostgreSQL leadership: stop() returns, and the lock is free, even while a takeover (elected) never finishes', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location) return;
  const store = await openStore(location);
  // Bounded: if stop() regressed, the stuck leader's client is never released and closing would wait for ever.
  t.after(() => Promise.race([store.close(), delay(2000)]));
  const pool = (store.engine as PostgresEngine).pool;
  const log = pino({ level: 'silent' });
  const stuck = new PostgresLeadership({ pool, log, pollMs: 100 });
  // Stopped in cleanup too: a leadership left polling after a failed assertion keeps the process alive.
  t.after(() => Promise.race([stuck.stop(), delay(6000, undefined, { ref: false })]));
  let elected = false;
  // A takeover that hangs (an external broker that never answers, say).
  void stuck.start({ elected: () => ((elected = true), new Promise(() => {})), deposed: () => {} });
  for (let i = 0; i < 100 && !elected; i++) await delay(20);
  assert.ok(elected, 'it took the lock');

  const stopped = await Promise.race([stuck.stop().then(() => 'stopped'), delay(8000, 'still waiting')]);
  assert.equal(stopped, 'stopped');
  const next = new PostgresLeadership({ pool, log, pollMs: 100 });
  t.after(() => Promise.race([next.stop(), delay(6000, undefined, { ref: false })]));
  let nextElected = false;
  await next.start({ elected: async () => void (nextElected = true), deposed: () => {} });
  await next.stop(); // before the store's pool closes: closing waits for every checked-out client
  assert.equal(nextElected, true, 'another server takes the lock at once');
});

/** A logger that keeps what the leaderships say (warn and up), for failure messages. */
function recordingLog(): { log: pino.Logger; said: string[] } {
  const said: string[] = [];
  return { log: pino({ level: 'warn' }, { write: (line: string) => void said.push(String(JSON.parse(line).msg)) }), said };
}

/** Stops the leaderships after the test, bounded, even when it failed half-way: one left polling keeps the process alive. */
function stopAfter(t: TestContext, ...leaderships: PostgresLeadership[]): void {
  t.after(() => Promise.all(leaderships.map((leadership) => Promise.race([leadership.stop(), delay(6000, undefined, { ref: false })]))));
}

/** A leader reaching PostgreSQL through a proxy that can go silent, and a standby connected directly. */
async function silentProxyWorld(t: TestContext): Promise<{ frozen: PostgresEngine; direct: PostgresEngine; goSilent: () => void } | undefined> {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return undefined;
  const direct = await openStore(location);
  t.after(() => Promise.race([direct.close(), delay(2000)]));
  // The leader reaches PostgreSQL through a proxy that can go silent: its TCP stays open (the
  // proxy's kernel still answers) and nothing more arrives either way, as with a frozen host.
  let silent = false;
  const sockets: Socket[] = [];
  const target = new URL(location.databaseUrl);
  const proxy = createServer((client) => {
    const server = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, server);
    client.on('data', (data) => void (silent || server.write(data)));
    server.on('data', (data) => void (silent || client.write(data)));
    for (const socket of [client, server]) socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    proxy.close();
  });
  const viaProxy = new URL(location.databaseUrl);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String((proxy.address() as AddressInfo).port);
  const frozen = await PostgresEngine.connect({ connectionString: viaProxy.toString(), schema: location.schema });
  t.after(() => Promise.race([frozen.close(), delay(2000)]));
  return { frozen, direct: direct.engine as PostgresEngine, goSilent: () => void (silent = true) };
}

test('PostgreSQL leadership: a leader whose connection goes silent (its host froze or died) loses the lock within seconds, and the standby takes over', async (t) => {
  const world = await silentProxyWorld(t);
  if (!world) return;
  const { log, said } = recordingLog();
  const leader = new PostgresLeadership({ pool: world.frozen.pool, log, pollMs: 500 });
  const standby = new PostgresLeadership({ pool: world.direct.pool, log, pollMs: 500 });
  stopAfter(t, leader, standby);
  const events: string[] = [];
  await leader.start({ elected: async () => void events.push('leader elected'), deposed: () => void events.push('leader deposed') });
  await standby.start({ elected: async () => void events.push('standby elected'), deposed: () => void events.push('standby deposed') });
  assert.deepEqual(events, ['leader elected'], `before the connection went silent; said: ${said.join(' | ')}`);
  world.goSilent();
  const since = Date.now();
  for (let i = 0; i < 400 && !events.includes('standby elected'); i++) await delay(100);
  const tookMs = Date.now() - since;
  assert.ok(events.includes('standby elected'), `the standby took over (events: ${events.join(', ')})`);
  assert.ok(tookMs < 30_000, `within ${tookMs} ms`);
  assert.ok(events.indexOf('leader deposed') >= 0 && events.indexOf('leader deposed') < events.indexOf('standby elected') + 2, events.join(', '));
  await standby.stop();
  await Promise.race([leader.stop(), delay(6000)]);
});

test('PostgreSQL leadership: a leader still taking over (its external broker does not answer) whose connection goes silent steps down, rather than driving the rollouts later beside the new leader', async (t) => {
  const world = await silentProxyWorld(t);
  if (!world) return;
  const { log, said } = recordingLog();
  // startWaitMs: start() goes on while the takeover waits, as a server's start does.
  const leader = new PostgresLeadership({ pool: world.frozen.pool, log, pollMs: 500, startWaitMs: 200 });
  const standby = new PostgresLeadership({ pool: world.direct.pool, log, pollMs: 500 });
  stopAfter(t, leader, standby);
  const events: string[] = [];
  // The takeover waits for a broker that never answers.
  await leader.start({ elected: () => (events.push('leader elected'), new Promise(() => {})), deposed: () => void events.push('leader deposed') });
  await standby.start({ elected: async () => void events.push('standby elected'), deposed: () => void events.push('standby deposed') });
  assert.deepEqual(events, ['leader elected'], `before the connection went silent; said: ${said.join(' | ')}`);
  world.goSilent();
  for (let i = 0; i < 400 && !(events.includes('standby elected') && events.includes('leader deposed')); i++) await delay(100);
  assert.ok(events.includes('standby elected'), `the standby took over (events: ${events.join(', ')})`);
  assert.ok(events.includes('leader deposed'), `the old leader knows it no longer leads (events: ${events.join(', ')})`);
  assert.equal((await leader.status()).isLeader, false, 'the old leader reports it does not lead');
  await standby.stop();
  await Promise.race([leader.stop(), delay(6000)]);
});
