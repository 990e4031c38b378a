import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { PostgresEngine } from '../../server/store/postgres-engine.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { cuttableProxy } from '../helpers/cuttable-proxy.ts';
import { engineMissing } from '../helpers/engines.ts';
import { postgresUrl } from './helpers/store-engines.ts';

/**
 * A server's shutdown closes its PostgreSQL pool, and pg's own end() waits for every connection
 * checked out to come back: a statement that never finishes held the shutdown until a supervisor
 * killed the process. close() waits a bounded time, then ends what is still running.
 */

const CLOSE_WAIT_MS = 500;
/**
 * close() takes at most three bounds (the statements, the holders, the goodbyes); an upper limit
 * far above that, since on a loaded CI machine timers ran seconds late (7 s seen for 1.5 s).
 */
const UNDER_LOAD_MS = 15_000;

async function baseUrl(t: TestContext): Promise<string | null> {
  const url = await postgresUrl();
  if (!url) engineMissing(t, 'PostgreSQL', 'nothing answers on 127.0.0.1:5432 as postgres or root with database test');
  return url;
}

/** How `promise` settles, and after how many ms; 'pending' when it has not within `limitMs`. */
async function outcome(promise: Promise<unknown>, limitMs: number): Promise<{ state: 'resolved' | 'rejected' | 'pending'; error?: Error; ms: number }> {
  const started = Date.now();
  const settled = promise.then(
    () => ({ state: 'resolved' as const }),
    (error: Error) => ({ state: 'rejected' as const, error }),
  );
  const result = await Promise.race([settled, delay(limitMs, { state: 'pending' as const }, { ref: false })]);
  return { ...result, ms: Date.now() - started };
}

test('close() with nothing running ends the pool at once, and a second close() is the same one', async (t) => {
  const url = await baseUrl(t);
  if (!url) return;
  // A long bound, so that a machine under load does not pass for one that waited it out.
  const engine = await PostgresEngine.connect({ connectionString: url, closeWaitMs: 10_000 });
  assert.deepEqual(await engine.get('SELECT 1 AS ok'), { ok: 1 });
  const first = engine.close();
  assert.equal(engine.close(), first, 'one close');
  const closed = await outcome(first, 20_000);
  assert.equal(closed.state, 'resolved', `closed: ${closed.error?.message}`);
  assert.ok(closed.ms < 10_000, `without waiting out the bound (${closed.ms} ms)`);
});

test('close() while a statement waits for a lock another session holds: after the bound the statement fails and close() says one connection was still in use', { timeout: 60_000 }, async (t) => {
  const url = await baseUrl(t);
  if (!url) return;
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  deferCleanup(t, () => holder.end());
  const key = 900_000 + (process.pid % 100_000);
  await holder.query('SELECT pg_advisory_lock($1)', [key]);

  const engine = await PostgresEngine.connect({ connectionString: url, closeWaitMs: CLOSE_WAIT_MS });
  // Bounded: a close() that hangs fails the test below rather than holding its process.
  deferCleanup(t, () => outcome(engine.close(), 5_000));
  // Two idle connections beside the busy one: those close at once.
  await Promise.all([engine.get('SELECT 1 AS ok'), engine.get('SELECT 1 AS ok')]);
  const waiting = engine.get('SELECT pg_advisory_lock(?) AS locked', [key]);
  const statement = outcome(waiting, 20_000);
  await delay(200);

  const closed = await outcome(engine.close(), 20_000);
  assert.equal(closed.state, 'rejected', 'close() settles, and says what it cut off');
  assert.equal(closed.error?.message, `closed 1 PostgreSQL connection still in use after ${CLOSE_WAIT_MS / 1000} s (what ran on them failed)`);
  assert.ok(closed.ms >= CLOSE_WAIT_MS - 50 && closed.ms < UNDER_LOAD_MS, `after the bound, not much later (${closed.ms} ms)`);
  const ended = await statement;
  assert.equal(ended.state, 'rejected', 'the statement failed');
  assert.match(ended.error?.message ?? '', /Connection terminated/);
  assert.equal(engine.pool.totalCount, 0, 'the pool holds no connection');
});

test('close() while PostgreSQL stopped answering mid-statement (a dead link): after the bound the statement fails and close() returns', { timeout: 60_000 }, async (t) => {
  const url = await baseUrl(t);
  if (!url) return;
  const target = new URL(url);
  const proxy = await cuttableProxy(t, { host: target.hostname, port: Number(target.port || 5432) });
  const viaProxy = new URL(url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);

  const engine = await PostgresEngine.connect({ connectionString: viaProxy.toString(), closeWaitMs: CLOSE_WAIT_MS });
  // Bounded: a close() that hangs fails the test below rather than holding its process.
  deferCleanup(t, () => outcome(engine.close(), 5_000));
  proxy.stall();
  const statement = outcome(engine.get('SELECT 1 AS ok'), 20_000);
  await delay(200);

  const closed = await outcome(engine.close(), 20_000);
  assert.equal(closed.state, 'rejected', 'close() settles, and says what it cut off');
  assert.match(closed.error?.message ?? '', /^closed 1 PostgreSQL connection still in use after 0\.5 s/);
  assert.ok(closed.ms < UNDER_LOAD_MS, `within the bound and a little (${closed.ms} ms)`);
  const ended = await statement;
  assert.equal(ended.state, 'rejected', 'the statement failed');
  assert.match(ended.error?.message ?? '', /Connection terminated/);
});

test('close() on a link gone silent with only idle connections returns, and leaves no half-open socket that would keep the process from exiting', { timeout: 60_000 }, async (t) => {
  const url = await baseUrl(t);
  if (!url) return;
  const target = new URL(url);
  const proxy = await cuttableProxy(t, { host: target.hostname, port: Number(target.port || 5432) });
  const viaProxy = new URL(url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);

  const engine = await PostgresEngine.connect({ connectionString: viaProxy.toString(), closeWaitMs: CLOSE_WAIT_MS });
  deferCleanup(t, () => outcome(engine.close(), 5_000));
  const clients = [await engine.pool.connect(), await engine.pool.connect()];
  for (const client of clients) client.release();
  assert.equal(engine.pool.idleCount, 2, 'two connections, both idle now');
  proxy.stall();

  const closed = await outcome(engine.close(), 20_000);
  assert.equal(closed.state, 'resolved', `nothing was in use: ${closed.error?.message}`);
  const open = clients.filter((client) => !client.connection.stream.destroyed);
  assert.equal(open.length, 0, `every socket is closed (${open.length} of ${clients.length} still open, waiting for a goodbye the silent server never answers)`);
});

test('close() while code holds a connection it never gives back: close() still returns, after twice the bound, and says so', { timeout: 60_000 }, async (t) => {
  const url = await baseUrl(t);
  if (!url) return;
  const engine = await PostgresEngine.connect({ connectionString: url, closeWaitMs: CLOSE_WAIT_MS });
  deferCleanup(t, () => outcome(engine.close(), 5_000));
  const kept = await engine.pool.connect();
  assert.deepEqual((await kept.query('SELECT 1 AS ok')).rows, [{ ok: 1 }]);

  const closed = await outcome(engine.close(), 20_000);
  assert.equal(closed.state, 'rejected', 'close() settles, and says what it cut off');
  assert.match(closed.error?.message ?? '', /^closed 1 PostgreSQL connection still in use after 0\.5 s/);
  assert.ok(closed.ms >= 2 * CLOSE_WAIT_MS - 50 && closed.ms < UNDER_LOAD_MS, `after twice the bound, not much later (${closed.ms} ms)`);
  await assert.rejects(kept.query('SELECT 1 AS ok'), /not queryable|terminated|ended/i, 'the connection kept is closed');
});
