import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * Once a rollout has promoted its candidate, operators give production to devices it never
 * targeted (another site, devices enrolled since). Rolling the rollout back restores the previous
 * production version; those devices run the rolled-back candidate all the same unless the rollback
 * takes them back too.
 */
test('a rollback of a promoted rollout takes back the devices given the candidate through the production alias outside the rollout', { timeout: 90_000 }, async (t) => {
  const world = await startRollbackWorld(t, ['north-1', 'north-2', 'south-1', 'south-2'], { labelsOf: (id) => ({ site: id.split('-')[0]! }) });
  if (!world) return;
  const { server, agents } = world;
  const id = await startRollout(world);
  const promoted = await settled(world, id, 'Completed');
  assert.equal(promoted.devices.total, 2, 'the rollout targets site=north only');
  assert.equal(await world.production(), '2');

  // After the promotion, south-1 is given production (wine@2) by hand; south-2 stays on wine@1.
  const assigned = await runCli(['assign', '--model', 'wine', '--version', 'production', '--role', 'active', '--device', 'south-1', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(assigned.code, 0, assigned.stderr);
  await waitFor(async () => agents.get('south-1')!.slots.active?.version === '2' && (await world.device('south-1')).active?.version === '2', 20_000, 'south-1 on wine@2');

  const rolledBack = await json(await server.request('POST', `/api/rollouts/${id}/rollback?reason=field+reports`));
  assert.equal(rolledBack.phase, 'RolledBack');
  const done = await settled(world, id, 'RolledBack');
  assert.equal(done.devices.total, 3);
  assert.deepEqual(done.deviceStates.map((device: { id: string; outside: boolean; baseline: string }) => [device.id, device.outside, device.baseline]).sort(), [['north-1', false, '1'], ['north-2', false, '1'], ['south-1', true, '1']]);
  assert.equal(done.devices.delivered, 3);
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '1'), 20_000, 'every device on wine@1');
  assert.equal(await world.production(), '1');
  const decision = done.decisions.find((entry: { kind: string }) => entry.kind === 'rollback');
  assert.match(decision.message, /rolled back by token:env-admin: field reports; every device goes back to its baseline \(previous production 1\); 1 device that runs 2 outside the rollout goes to 1 too \(south-1\)$/);
  assert.deepEqual((await world.answers('south-2')).filter((answer) => !answer.endsWith(' v1 activated')), [], 'south-2, on wine@1 all along, is sent nothing');
});
