import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A rollback of a promoted rollout restores the previous production version as one of its last
 * actions. A new rollout of the model started while that restore had not landed yet (its
 * transaction waiting for a row another one held, or retried after a failure) took "no
 * production" (or the rolled-back candidate) for its previous production: rolled back in its turn,
 * it then restored the wrong version, or none. The start waits for the restore, like it waits for
 * the previous rollout's reverts.
 */
test('PostgreSQL: a rollout started while the previous rollout\'s rollback is still restoring production is refused until it has, then records the restored version', { timeout: 60_000 }, async (t) => {
  const world = await startRollbackWorld(t, ['next-1'], { engine: 'postgres' });
  if (!world) return;
  const { server } = world;
  await world.push('3');
  const first = await startRollout(world);
  await settled(world, first, 'Completed');
  assert.equal(await world.production(), '2');

  // Another transaction holds wine@1's row: the rollback's restore of production waits for it.
  const { databaseUrl, databaseSchema } = server.server.ctx.config;
  const holder = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${databaseSchema}` });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query('BEGIN');
  await holder.query("SELECT version FROM model_versions WHERE model = 'wine' AND version = '1' FOR UPDATE");
  const spec = { model: 'wine', candidateVersion: '3', target: { matchLabels: { site: 'north' } }, steps: [{ pause: {} }] };
  try {
    await json(await server.request('POST', `/api/rollouts/${first}/rollback?reason=review`));
    await waitFor(async () => (await world.rollout(first)).pendingActions.every((action: any) => action.kind === 'markVersion'), 20_000, 'the revert done');
    const early = await server.request('POST', '/api/rollouts', { json: spec });
    const body = await early.text();
    assert.equal(early.status, 409, body);
    assert.match(body, new RegExp(first));
  } finally {
    await holder.query('COMMIT'); // the schema cannot be dropped while the row is held
  }
  await settled(world, first, 'RolledBack');
  assert.equal(await world.production(), '1');
  const second = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: spec }));
  assert.equal((await world.rollout(second.id)).previousProduction, '1');
});
