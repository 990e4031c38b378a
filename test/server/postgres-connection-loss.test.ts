import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { openStore } from '../../server/store/open-store.ts';
import { freshStoreLocation } from './helpers/store-engines.ts';

/**
 * A PostgreSQL backend terminated (a restart or failover) while the server holds its connection in
 * a transaction: the transaction fails, the process does not crash on the connection's 'error'
 * event, and the next transaction runs on a fresh connection.
 */
test('PostgreSQL: a connection lost mid-transaction fails that transaction only; the process and the pool carry on', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location) return;
  const store = await openStore(location);
  t.after(() => store.close());
  const admin = await openStore(location);
  t.after(() => admin.close());

  for (const moment of ['between statements', 'during a statement'] as const) {
    const failed = store.engine.transaction(async (tx) => {
      const { pid } = (await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!;
      if (moment === 'between statements') {
        await admin.engine.get('SELECT pg_terminate_backend(?) AS done', [pid]);
        await delay(300); // the socket closes while no query runs: only the 'error' event tells
        await tx.get('SELECT 1 AS ok');
      } else {
        await Promise.all([tx.get('SELECT pg_sleep(5) AS slept'), delay(300).then(() => admin.engine.get('SELECT pg_terminate_backend(?) AS done', [pid]))]);
      }
    });
    await assert.rejects(failed, /terminat|Connection|closed/i, moment);
    assert.deepEqual(await store.engine.get('SELECT 1 AS ok'), { ok: 1 }, `the pool still serves after a loss ${moment}`);
  }
});
