import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/**
 * The server adds what a heartbeat's serving counters grew by to the model the heartbeat names
 * active. Rows the outgoing model served after the last heartbeat must be told under it: the agent
 * sends a heartbeat just before its active model changes, not only at its interval (an hour here).
 */
test('an activation is preceded by a heartbeat that names the outgoing active model with the rows it served', async (t) => {
  const { agent, predict } = await startAgent(t, world, 'switch-1', { heartbeatIntervalMs: 3_600_000 });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const first = await world.assign('switch-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const before = world.harness.ingest.heartbeats.filter((beat) => beat.deviceId === 'switch-1').length;
  for (let i = 0; i < 3; i++) assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]] })).status, 200);

  const second = await world.assign('switch-1', world.v2, 'active');
  await world.waitForReport(isOutcome(second.id, 'activated'));
  await waitFor(() => world.harness.ingest.heartbeats.filter((beat) => beat.deviceId === 'switch-1').length > before, 5000, 'a heartbeat at the switch');
  const beats = world.harness.ingest.heartbeats.filter((beat) => beat.deviceId === 'switch-1').slice(before);
  assert.equal(beats.length, 1, 'one heartbeat at the switch (the interval is an hour)');
  assert.equal(beats[0]!.active?.sha256, world.v1.id, 'it names the outgoing model');
  assert.equal(beats[0]!.serving?.predictions, 6, 'with the rows the outgoing model served');
  // What the new model serves is told under it at the next heartbeat.
  assert.equal((await predict({ rows: [[1, 2, 3, 4, 5, 6, 7]] })).json.sha256, world.v2.id);
});
