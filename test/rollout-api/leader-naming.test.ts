import assert from 'node:assert/strict';
import { test } from 'node:test';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

test('PostgreSQL: a follower names the leader by its --node-id, in its status and in the refusal of a rollout command', async (t) => {
  const a = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'plant-a-control' } });
  if (!a) return;
  const { databaseUrl, databaseSchema } = a.server.ctx.config;
  const { logger, lines } = recordingLogger();
  const b = (await startTestServer(t, { engine: 'postgres', config: { databaseUrl, databaseSchema, nodeId: 'plant-b-control' }, start: { log: logger } }))!;
  const leader = (await (await a.request('GET', '/api/rollouts/leader')).json()) as any;
  assert.equal(leader.isLeader, true);
  assert.match(leader.instance, /^plant-a-control:\d+:[0-9a-f]{6}$/);
  const follower = (await (await b.request('GET', '/api/rollouts/leader')).json()) as any;
  assert.equal(follower.leader, leader.instance);
  const refused = await b.request('POST', '/api/rollouts', { json: { apiVersion: 'fleetprune/v1', kind: 'Rollout', model: 'wine', candidateVersion: '2', steps: [{ setWeight: 100 }] } });
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as any).error.message, `this server (${follower.instance}) is not the rollout leader; send rollout commands to the leader, plant-a-control (process ${leader.instance.split(':')[1]}, instance ${leader.instance}; a load balancer finds it by GET /readyz?role=leader)`);
  // Which is what a load balancer asks: both are ready; only the leader is ready as the leader.
  const ready = async (server: typeof a, query: string) => {
    const response = await fetch(`${server.baseUrl}/readyz${query}`);
    return [response.status, await response.json()];
  };
  assert.deepEqual(await ready(a, '?role=leader'), [200, { status: 'ready', role: 'leader' }]);
  assert.deepEqual(await ready(b, '?role=leader'), [503, { status: 'standby', leader: leader.instance }]);
  assert.deepEqual(await ready(b, ''), [200, { status: 'ready', role: 'standby' }]);
  // The standby says so in its log, naming the leader, once (it tries for the lead every 2 s).
  const standing = lines.filter((line) => String(line.msg).startsWith('standing by: '));
  assert.deepEqual(standing.map((line) => line.msg), [`standing by: ${leader.instance} leads rollouts; this server takes over if it goes`]);
});
