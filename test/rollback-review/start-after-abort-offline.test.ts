import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * An aborted rollout's revert that could not reach a device (offline) waits at the broker: a
 * drop-candidate, queued for the device's session. A rollout of the same candidate started right
 * after the abort gives that device the candidate meanwhile. Back online, the agent took the newer
 * assignment first (it is the retained one) and then the older drop, which dropped the candidate
 * the newer rollout had just installed. A drop-candidate issued before the candidate's assignment
 * is moot: it meant an older candidate, gone already.
 */
test('a rollout started right after an abort keeps the offline device it assigned: the aborted rollout\'s revert, when the device is back, leaves it alone', { timeout: 90_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['back-1', 'back-2']))!;
  const { server, agents } = world;
  const steps = [{ setWeight: 100 }, { pause: {} }];
  const first = await startRollout(world, steps);
  await waitFor(async () => {
    const view = await world.rollout(first);
    return view.phase === 'Paused' && view.devices.delivered === 2;
  }, 30_000, 'the first rollout paused with the candidate on both devices');

  // back-2 goes offline; the abort's revert cannot reach it.
  await agents.get('back-2')!.stop();
  await waitFor(async () => !(await world.device('back-2')).online, 20_000, 'back-2 offline');
  await json(await server.request('POST', `/api/rollouts/${first}/abort?reason=redo`));
  await waitFor(async () => {
    const view = await world.rollout(first);
    const device = view.deviceStates.find((d: any) => d.id === 'back-2');
    return view.phase === 'Aborted' && device?.delivery === 'unreachable' && view.pendingActions.length === 0;
  }, 30_000, 'the first rollout aborted, back-2 unreachable');

  // The same rollout again, at once: back-2 (offline) is given the candidate by it.
  const second = await startRollout(world, steps);
  await waitFor(async () => (await world.rollout(second)).phase === 'Paused', 30_000, 'the second rollout paused');

  // back-2 is back: the second rollout's assignment is what it runs, and nothing fails.
  await world.startAgent('back-2');
  await waitFor(async () => {
    const device = (await world.rollout(second)).deviceStates.find((d: any) => d.id === 'back-2');
    return device?.delivery === 'delivered';
  }, 30_000, 'the second rollout delivered to back-2');
  // Give the first rollout's re-send (on back-2's return) every chance to land.
  await settled(world, first, 'Aborted');
  const view = await world.rollout(second);
  assert.equal(view.phase, 'Paused', JSON.stringify(view.decisions.slice(-3)));
  const answers = (await world.answers('back-2')).join('\n');
  assert.equal(agents.get('back-2')!.slots.candidate?.version, '2', answers);
  assert.doesNotMatch(answers, new RegExp(`${second}-\\S+ candidate v2 installed[^]*candidate-dropped`), 'the candidate is not dropped after the second rollout installed it');
  const status = (await json(await server.request('GET', '/api/models/wine/versions/2'))).status;
  assert.match(status?.reason ?? '', /^aborted by .*: redo$/, `the second rollout did not fail the candidate: ${JSON.stringify(status)}`);
  // The second rollout goes on to production, both devices on the candidate.
  assert.equal((await server.request('POST', `/api/rollouts/${second}/promote`)).status, 200);
  await settled(world, second, 'Completed');
  assert.equal(await world.production(), '2');
  for (const id of ['back-1', 'back-2']) assert.equal(agents.get(id)!.slots.active?.version, '2', id);
});
