import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A device offline during a rollback is owed its revert when it comes back (its drop-candidate
 * waited in its broker session, which the embedded broker loses on a restart). A device that came
 * back while the server was restarting announced itself after the broker was up but before the
 * rollout controller was (the dashboard is built in between; with an external broker its retained
 * status arrives at once): that "online" went nowhere, so it was never sent its revert, kept the
 * rolled-back candidate installed, and the rollout counted it unreachable for good.
 */
test('a device that comes back while the server restarts after a rollback is sent its revert: its candidate is dropped and the rollout counts it back', { timeout: 60_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['back-1', 'back-2']))!;
  const { agents } = world;
  const id = await startRollout(world, [{ setWeight: 100 }, { pause: {} }]);
  await waitFor(async () => (await world.rollout(id)).phase === 'Paused', 20_000, 'the candidate installed everywhere');
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.candidate?.version === '2'), 10_000, 'both devices carry wine@2');

  await agents.get('back-2')!.stop();
  await waitFor(async () => !(await world.device('back-2')).online, 10_000, 'back-2 offline');
  await json(await world.server.request('POST', `/api/rollouts/${id}/rollback?reason=review`));
  await waitFor(async () => {
    const states = (await world.rollout(id)).deviceStates;
    return states.find((device: any) => device.id === 'back-2')?.delivery === 'unreachable';
  }, 20_000, 'back-2 unreachable');
  await waitFor(() => agents.get('back-1')!.slots.candidate === null, 10_000, 'back-1 dropped the candidate');

  // back-2 is started while the server is down: it connects as soon as the broker is back.
  let back2 = agents.get('back-2')!;
  await world.restart({}, async () => {
    back2 = await world.startAgent('back-2');
  });
  await waitFor(() => back2.slots.candidate === null, 20_000, 'back-2 dropped the rolled-back candidate');
  assert.equal(back2.slots.active?.version, '1');
  await waitFor(async () => (await world.rollout(id)).devices.delivered === 2, 10_000, 'the rollout counts back-2 back');
});
