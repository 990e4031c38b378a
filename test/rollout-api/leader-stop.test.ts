import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
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
  let elected = false;
  // A takeover that hangs (an external broker that never answers, say).
  void stuck.start({ elected: () => ((elected = true), new Promise(() => {})), deposed: () => {} });
  for (let i = 0; i < 100 && !elected; i++) await delay(20);
  assert.ok(elected, 'it took the lock');

  const stopped = await Promise.race([stuck.stop().then(() => 'stopped'), delay(8000, 'still waiting')]);
  assert.equal(stopped, 'stopped');
  const next = new PostgresLeadership({ pool, log, pollMs: 100 });
  let nextElected = false;
  await next.start({ elected: async () => void (nextElected = true), deposed: () => {} });
  await next.stop(); // before the store's pool closes: closing waits for every checked-out client
  assert.equal(nextElected, true, 'another server takes the lock at once');
});
