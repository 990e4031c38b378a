import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeSigner } from '../server/helpers/artifacts.ts';
import { json, settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A key rotation: the fleet's baseline, wine@1, was signed by the CI key the server trusted then
 * (--trusted-key); the server was restarted without that key once newer versions were signed with
 * another. A rollback of wine@2 then never reached a single device: the revert could not build the
 * baseline's assignment (the server no longer vouches for its signer), failed, and was retried for
 * ever, leaving every device — even those holding wine@1 on disk with the endorsement they kept —
 * on the rolled-back candidate.
 */
test('a rollback to a baseline whose signer the server no longer trusts brings back the devices that hold it; one that would have to download it refuses, naming the key', { timeout: 90_000 }, async (t) => {
  const ci = await makeSigner(t);
  const world = (await startRollbackWorld(t, ['rotated-1', 'rotated-2'], { config: { trustedKeys: [ci.publicKeyPath] }, baselineKey: ci.privateKey }))!;
  const { agents } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  for (const agent of agents.values()) assert.deepEqual([agent.slots.active?.version, agent.slots.previous?.version], ['2', '1']);

  // rotated-2 lost its copy of wine@1: only a download (which needs the server's word for the CI key) could bring it back.
  const lost = agents.get('rotated-2')!;
  await rm(join(world.dataDir, 'rotated-2', 'models', lost.slots.previous!.sha256), { recursive: true, force: true });
  await world.restart({ trustedKeys: [] });
  await waitFor(async () => (await world.device('rotated-1')).online && (await world.device('rotated-2')).online, 20_000, 'the devices reconnected');

  await json(await world.server.request('POST', `/api/rollouts/${id}/rollback?reason=rotation`));
  const done = await settled(world, id, 'RolledBack', 20_000);
  await waitFor(() => agents.get('rotated-1')!.slots.active?.version === '1', 10_000, 'rotated-1 back on wine@1 from its disk');
  assert.equal(await world.production(), '1');
  assert.equal(lost.slots.active?.version, '2', 'rotated-2 could not verify a download of wine@1');
  const refused = done.deviceStates.find((device: any) => device.id === 'rotated-2');
  assert.equal(refused?.delivery, 'refused', JSON.stringify(done.deviceStates));
  assert.match(refused.reason ?? '', new RegExp(keyId(ci.privateKey)), refused.reason);
  assert.equal(done.devices.delivered, 1, JSON.stringify(done.deviceStates));
});

/**
 * The same rotation, rolled back by hand: `assign --role active` of the version the devices ran
 * before (what protocol.md calls a rollback from disk) was refused for every device with "devices
 * would refuse it", though the devices hold it and would switch to it. Now it goes to devices
 * that hold it, and a device that would have to download it is named in the refusal.
 */
test('an assignment of a version whose signer the server no longer trusts goes to devices that hold it; one naming a device that would have to download it is refused, naming that device', { timeout: 90_000 }, async (t) => {
  const ci = await makeSigner(t);
  const world = (await startRollbackWorld(t, ['held-1', 'held-2'], { config: { trustedKeys: [ci.publicKeyPath] }, baselineKey: ci.privateKey }))!;
  const { agents } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  await world.restart({ trustedKeys: [] });
  await waitFor(async () => (await world.device('held-1')).online && (await world.device('held-2')).online, 20_000, 'the devices reconnected');
  await json(await world.server.request('POST', '/api/devices', { json: { id: 'new-3', labels: { site: 'north' } } }));

  const refused = await world.server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ['held-1', 'new-3'] } });
  assert.equal(refused.status, 409);
  assert.deepEqual(await refused.json(), {
    error: {
      code: 'conflict',
      message: `wine@1 is signed with key ${keyId(ci.privateKey)}, which this server does not trust (--trusted-key); device new-3 does not hold it, and a device refuses to download it (one that holds it, as its active, previous or candidate version, switches to it from its own store)`,
    },
  });
  assert.equal((await world.device('held-1')).assignment?.version, '2', 'nothing recorded');

  const assigned = await json(await world.server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ['held-1', 'held-2'] } }));
  assert.deepEqual(assigned.devices.map((device: any) => device.deviceId), ['held-1', 'held-2']);
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '1'), 15_000, 'both devices back on wine@1 from their disks');
  await waitFor(async () => (await world.answers('held-1')).some((answer) => answer.endsWith(' active v1 activated')), 10_000, 'held-1\'s answer stored');
});
