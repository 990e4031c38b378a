import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * After a rollout completed, an operator gave one of its devices a candidate of another version by
 * hand. The rollback does not undo that newer assignment (it sends that device nothing), but it
 * logged "refused its baseline: superseded", counted the device not back for good (the dashboard's
 * Roll back stayed on), and every rollback again answered 200 saying the device "is sent it again"
 * while nothing was sent. It now says what happened, and a rollback again is refused naming it.
 */
test('a rollback leaves a device assigned something newer since, says so, and a rollback again is refused naming it', { timeout: 90_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['kept-1', 'handed-2']))!;
  await world.push('3');
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  await json(await world.server.request('POST', '/api/assignments', { json: { model: 'wine', version: '3', role: 'candidate', deviceIds: ['handed-2'] } }));
  await waitFor(() => world.agents.get('handed-2')!.slots.candidate?.version === '3', 15_000, 'handed-2 holds wine@3 as its candidate');

  assert.equal((await world.server.request('POST', `/api/rollouts/${id}/rollback`)).status, 200);
  const done = await settled(world, id, 'RolledBack', 20_000);
  assert.equal(world.agents.get('kept-1')!.slots.active?.version, '1');
  assert.equal(done.notBackOnBaseline, 0, 'nothing a rollback could send');
  const messages = done.decisions.map((decision: any) => decision.message as string);
  assert.ok(messages.includes('device handed-2 was not sent its baseline: it has been sent something newer since (an assignment, or another rollout), which this revert does not undo: if it does not run its baseline now (fleetprune devices show handed-2), assign it by hand'), JSON.stringify(messages));
  assert.ok(!messages.some((message: string) => /refused its baseline/.test(message)), 'no refusal made up');
  // Counted apart in the rollout's summary: `rollout list` said "1 refused" of it.
  const summary = (await json(await world.server.request('GET', '/api/rollouts'))).rollouts.find((r: any) => r.id === id);
  assert.deepEqual([summary.devices.refused, summary.devices.reassigned], [0, 1]);
  const detail = await json(await world.server.request('GET', `/api/rollouts/${id}`));
  assert.deepEqual(detail.deviceStates.map((d: any) => [d.id, d.delivery, d.reassigned]).sort(), [['handed-2', 'refused', true], ['kept-1', 'delivered', false]]);

  const again = await world.server.request('POST', `/api/rollouts/${id}/rollback`);
  assert.equal(again.status, 409);
  assert.deepEqual(await again.json(), {
    error: {
      code: 'conflict',
      message: `rollout ${id} is already rolled back: every device it touched is back on its baseline, but for handed-2, sent something newer since, which a rollback does not undo (assign it its baseline by hand); nothing to roll back`,
    },
  });
});
