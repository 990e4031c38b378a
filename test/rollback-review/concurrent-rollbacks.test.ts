import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { settled, startRollbackWorld, startRollout } from './rollback-world.ts';

/**
 * Rollback clicked twice at once, over REST and gRPC, on a fully promoted rollout: exactly one of
 * them rolls back, the other is refused (nothing left to send), every device goes back once, and
 * one rollback is audited.
 */
test('REST and gRPC rollbacks of a promoted rollout at the same moment: one rolls back, the other is refused, every device back once', { timeout: 60_000 }, async (t) => {
  const world = (await startRollbackWorld(t, ['twice-1', 'twice-2', 'twice-3']))!;
  const { server, agents } = world;
  const id = await startRollout(world);
  await settled(world, id, 'Completed');
  const grpc = grpcClient(server.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());

  const [rest, viaGrpc] = await Promise.allSettled([
    server.request('POST', `/api/rollouts/${id}/rollback?reason=rest`).then(async (response) => ({ status: response.status, body: await response.text() })),
    grpc.call('RollbackRollout', { id, reason: 'grpc' }),
  ]);
  const restOk = rest.status === 'fulfilled' && rest.value.status === 200;
  const grpcOk = viaGrpc.status === 'fulfilled';
  assert.equal(Number(restOk) + Number(grpcOk), 1, JSON.stringify({ rest, viaGrpc: viaGrpc.status === 'rejected' ? String(viaGrpc.reason) : 'ok' }));
  if (!restOk) assert.equal(rest.status === 'fulfilled' && rest.value.status, 409);
  else assert.match(String((viaGrpc as PromiseRejectedResult).reason), /already rolled back/);

  const done = await settled(world, id, 'RolledBack');
  assert.equal(done.devices.delivered, 3);
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '1'), 10_000, 'every device on wine@1');
  assert.equal(await world.production(), '1');
  const rollbacks = (await server.server.ctx.store.engine.all<{ n: number }>("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'rollout.rollback'", []))[0]?.n;
  assert.equal(Number(rollbacks), 1, 'one rollback is audited');
  for (const deviceId of agents.keys()) {
    const rolledBack = (await world.answers(deviceId)).filter((answer) => / rolled-back/.test(answer));
    assert.equal(rolledBack.length, 1, `${deviceId} went back once: ${rolledBack.join('; ')}`);
  }
});
