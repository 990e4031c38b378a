import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RolloutHolds } from '../../server/rollout/rollout-holds.ts';
import { registerVersion } from './helpers/rollout-fixtures.ts';
import { startRolloutServer } from './helpers/rollout-server.ts';

/**
 * A direct assignment checks that no rollout under way targets its devices, then records itself;
 * a rollout start reads the devices' baselines. Sent together, both passed (wide on PostgreSQL):
 * the rollout then held devices whose baseline it read before the assignment changed it. They take
 * turns: the start waits for the assignment (or the assignment is refused, naming the rollout).
 */
test('a rollout start and a direct assignment to its devices take turns: the start comes after the assignment is recorded', async (t) => {
  const s = await startRolloutServer(t, { devices: 2 });
  if (!s) return;
  const { server } = s;
  await registerVersion(server.ctx.store, 'wine', '3', server.ctx.signingKey.privateKey);
  const enrolled = await s.request('POST', '/api/devices', { json: { id: 'dev-01', labels: { site: 'north' } } });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());

  // Right after the assignment found no rollout holding dev-01, the operator starts one.
  const original = RolloutHolds.prototype.ofDevices;
  let start: Promise<Response> | undefined;
  RolloutHolds.prototype.ofDevices = async function (this: RolloutHolds, ...args: Parameters<typeof original>) {
    const found = await original.apply(this, args);
    if (!start) {
      start = s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ pause: {} }] } });
      // Without turns the start is created now; with them it waits for the assignment.
      await Promise.race([start, new Promise((resolve) => setTimeout(resolve, 500))]);
    }
    return found;
  };
  t.after(() => (RolloutHolds.prototype.ofDevices = original));

  const assigned = await s.request('POST', '/api/assignments', { json: { model: 'wine', version: '3', role: 'active', deviceIds: ['dev-01'] } });
  assert.equal(assigned.status, 201, await assigned.clone().text());
  const started = await start!;
  assert.equal(started.status, 201, await started.clone().text());
  const audit = (await server.ctx.store.audit.list({ limit: 20 })).reverse().map((entry) => entry.action);
  assert.ok(audit.indexOf('assignment.create') >= 0 && audit.indexOf('assignment.create') < audit.indexOf('rollout.start'), `the assignment is recorded before the start: ${audit.join(', ')}`);
});
