import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * A rollout paused because its pilot device is offline, and the device is then revoked: the pause
 * went on saying "the step goes on when one of them has it (each is sent it again when it comes
 * back)", though a revoked device never comes back; only a manual resume found it gone. The
 * revocation now tries the device once more, finds it gone, and the pause says the cohort left.
 */
test('a pilot device revoked while the rollout waits for it to come back: the pause says the cohort left the fleet', { timeout: 90_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['away-1', 'stays-2']))!;
  await world.agents.get('away-1')!.stop();
  await waitFor(async () => !(await world.device('away-1')).online, 10_000, 'away-1 offline');
  const id = await startRollout(world, [{ devices: ['away-1'] }, { setWeight: 100 }], { offline: { initialBackoff: '100ms', maxBackoff: '100ms', maxAttempts: 1 } });
  await waitFor(async () => /the step goes on when one of them has it/.test((await world.rollout(id)).pause?.message ?? ''), 20_000, 'paused waiting for away-1');

  assert.equal((await world.server.request('DELETE', '/api/devices/away-1')).status, 204);
  await waitFor(async () => (await world.rollout(id)).pause?.message === "every device of step 1's cohort left the fleet (1); none can receive the candidate: promote --step goes on without them, rollback reverts", 10_000, 'the pause says the cohort left');
  const rollout = await world.rollout(id);
  assert.equal(rollout.phase, 'Paused');
  const decisions = (await json<{ decisions: { message: string }[] }>(await world.server.request('GET', `/api/rollouts/${id}`))).decisions.map((d) => d.message);
  assert.ok(decisions.includes('device away-1 was revoked (it left the fleet); its delivery of 2 as candidate is tried once more, to count it gone'), JSON.stringify(decisions));
});
