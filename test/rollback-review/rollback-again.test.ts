import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A device that could not go back when the rollback reached it — its copy of the baseline gone
 * from its disk, and the server without its file for a while (a blob store restored from a backup
 * later) — answered `refused` and stayed on the rolled-back candidate. The
 * operator's second rollback, once the download works again, was refused ("already rolled back"),
 * so no rollback could bring that device back any more.
 */
test('a rollback that a device refused for a passing reason can be sent again: the second rollback brings it back, the others are left alone', { timeout: 60_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['again-1', 'again-2']))!;
  const { server, agents, proxy } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  for (const agent of agents.values()) assert.deepEqual([agent.slots.active?.version, agent.slots.previous?.version], ['2', '1']);
  // One production version at a time: wine@1, production before the rollout, is superseded by it.
  const statusOf = async (version: string) => {
    const found = (await json(await server.request('GET', `/api/models/wine/versions/${version}`))).status;
    return found ? [found.status, found.reason] : null;
  };
  assert.deepEqual(await statusOf('1'), ['superseded', 'superseded by wine@2']);
  assert.equal((await statusOf('2'))?.[0], 'production');

  // again-1 lost its copy of wine@1, and the server answers 404 for wine@1's model for now.
  const lost = agents.get('again-1')!;
  await rm(join(world.dataDir, 'again-1', 'models', lost.slots.previous!.sha256), { recursive: true, force: true });
  proxy.missing.add(world.versions.get('1')!.files['model.onnx']!.sha256);

  await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=first`));
  const first = await settled(world, id, 'RolledBack');
  assert.equal(first.devices.refused, 1, JSON.stringify(first.deviceStates));
  // The rollback marks the candidate rolled back, then restores wine@1 (not left superseded).
  assert.deepEqual(await statusOf('1'), ['production', `restored by rollback of rollout ${id} (wine@2)`]);
  assert.equal((await statusOf('2'))?.[0], 'rolled-back');
  assert.equal(lost.slots.active?.version, '2', 'again-1 could not go back yet');
  assert.equal(agents.get('again-2')!.slots.active?.version, '1');
  const answersBefore = await world.answers('again-2');

  proxy.missing.clear();
  const again = await server.request('POST', `/api/rollouts/${id}/rollback?reason=second`);
  assert.equal(again.status, 200, await again.clone().text());
  const second = await settled(world, id, 'RolledBack');
  await waitFor(() => lost.slots.active?.version === '1', 20_000, 'again-1 back on wine@1');
  assert.equal(second.devices.refused, 0, JSON.stringify(second.deviceStates));
  assert.equal(second.devices.delivered, 2);
  assert.deepEqual(await world.answers('again-2'), answersBefore, 'the device already back was sent nothing');
  assert.equal(await world.production(), '1');

  // Nothing left to send: a third rollback is refused as before.
  const third = await server.request('POST', `/api/rollouts/${id}/rollback`);
  assert.equal(third.status, 409);
  assert.match((await third.json()).error?.message ?? '', /already rolled back/);
});

test('a rolled-back rollout is not sent again once a newer rollout of the model is under way: refused, naming it', { timeout: 60_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['newer-1', 'newer-2']))!;
  const { server, agents, proxy } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  const lost = agents.get('newer-1')!;
  await rm(join(world.dataDir, 'newer-1', 'models', lost.slots.previous!.sha256), { recursive: true, force: true });
  proxy.missing.add(world.versions.get('1')!.files['model.onnx']!.sha256);
  await json(await server.request('POST', `/api/rollouts/${id}/rollback`));
  assert.equal((await settled(world, id, 'RolledBack')).devices.refused, 1);
  proxy.missing.clear();

  // A newer rollout of the model, paused at its first step: sending the old baseline again would undo it.
  await world.push('3');
  const newer = await startRollout(world, [{ pause: {} }], { candidateVersion: '3' });
  await waitFor(async () => (await world.rollout(newer)).phase === 'Paused', 20_000, 'the newer rollout under way');
  const again = await server.request('POST', `/api/rollouts/${id}/rollback`);
  assert.equal(again.status, 409, await again.clone().text());
  assert.match((await again.json()).error?.message ?? '', new RegExp(`rollout ${newer} of wine .* came after this one`));
  assert.equal((await world.rollout(id)).devices.refused, 1, 'nothing was sent');
  // Its detail still counts a device not back, and says why a rollback is refused anyway (the dashboard's Roll back is off).
  const detail = await json(await server.request('GET', `/api/rollouts/${id}`));
  assert.equal(detail.notBackOnBaseline, 1);
  assert.match(detail.rollbackRefused ?? '', new RegExp(`^rollout ${newer} of wine .* came after this one`));
});

test('a rollback whose baseline download fails for a while (503) is no refusal: the device keeps trying, and comes back on its own once the download works', { timeout: 60_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['retry-1', 'retry-2']))!;
  const { server, agents, proxy } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  const lost = agents.get('retry-1')!;
  await rm(join(world.dataDir, 'retry-1', 'models', lost.slots.previous!.sha256), { recursive: true, force: true });
  proxy.unavailable.add(world.versions.get('1')!.files['model.onnx']!.sha256);

  await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=outage`));
  await waitFor(() => agents.get('retry-2')!.slots.active?.version === '1', 20_000, 'retry-2 back on wine@1');
  // Several takes of the revert, each of several download attempts: before, the first take's last attempt refused it for good.
  await waitFor(() => proxy.unavailableAnswers >= 6, 20_000, 'the download failing for a while');
  assert.equal(lost.slots.active?.version, '2', 'retry-1 cannot go back yet');
  assert.equal((await world.rollout(id)).devices.refused ?? 0, 0, 'not counted as refused');

  proxy.unavailable.clear();
  await waitFor(() => lost.slots.active?.version === '1', 20_000, 'retry-1 back on wine@1, with no second rollback');
  assert.equal((await world.rollout(id)).devices.refused ?? 0, 0);
});
