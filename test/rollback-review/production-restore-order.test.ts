import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A rollback right as a rollout completes: the completion's "wine@2 is production" and the
 * rollback's "wine@2 rolled back, wine@1 production again" are actions of one rollout. They ran
 * at the same time, so a completion that was slow to land (its transaction waiting for a row
 * another transaction held — an operator retiring or aliasing a version at that moment, a busy
 * PostgreSQL) moved the production alias back onto the rolled-back candidate after the rollback
 * had restored the previous version.
 */
test('PostgreSQL: a rollback while the completion is still marking the candidate production leaves the previous version production', { timeout: 60_000 }, async (t) => {
  const world = await startRollbackWorld(t, ['order-1'], { engine: 'postgres' });
  if (!world) return;
  const { server } = world;
  const { databaseUrl, databaseSchema } = server.server.ctx.config;
  // Another transaction holds wine@2's row: the completion's status change waits for it.
  const holder = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${databaseSchema}` });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query('BEGIN');
  await holder.query("SELECT version FROM model_versions WHERE model = 'wine' AND version = '2' FOR UPDATE");

  let id: string;
  try {
    id = await startRollout(world);
    await waitFor(async () => (await world.rollout(id)).phase === 'Completed', 20_000, 'the rollout completed');
    assert.equal(await world.production(), '1', 'the completion has not marked wine@2 production yet');
    await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=review`));
    // The rollback's own status changes get their chance to run before the completion's lands.
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    await holder.query('COMMIT'); // the schema cannot be dropped while the row is held
  }

  const done = await settled(world, id, 'RolledBack');
  assert.equal(done.outcome?.status, 'rolled-back');
  assert.equal(await world.production(), '1', 'the previous production version is restored');
  const status = await json(await server.request('GET', '/api/models/wine/versions/2'));
  assert.equal(status.status?.status, 'rolled-back', JSON.stringify(status.status));
  await waitFor(() => world.agents.get('order-1')!.slots.active?.version === '1', 10_000, 'order-1 back on wine@1');
});
