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
