import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Agent } from '../../agent/agent.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

/**
 * A rollout rolled back while its candidate only sits in the candidate slot sends the device a
 * drop-candidate command and retains its baseline as active under a second id (StoreFleetPort.revert).
 * The agent answers the drop first; the retained baseline, already the active model, is answered
 * `activated` after it (docs/agent.md: an activation of the model already active is counted). So a
 * count read as soon as the server has the drop's answer (the acceptance test's "candidates cleared")
 * can precede that answer, which then falls in the next rollout's count: two `activated` answers,
 * to two assignments, each counted once.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

async function counted(agent: Agent): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const value of (await agent.metrics.assignments.get()).values) if (value.value > 0) counts[String(value.labels.outcome)] = value.value;
  return counts;
}

test('a rollback\'s retained baseline answered after the drop\'s answer is a second `activated` answer, counted once, beside the next activation', async (t) => {
  const deviceId = 'retain-1';
  const { agent } = await startAgent(t, world, deviceId, { holdout: undefined });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const assign = async (artifact: typeof world.v1, role: 'active' | 'candidate', outcome: string) => {
    const sent = await world.assign(deviceId, artifact, role);
    await world.waitForReport(isOutcome(sent.id, outcome));
    return sent.id;
  };
  await assign(world.v1, 'active', 'activated');
  await assign(world.v2, 'candidate', 'installed');
  // The rollback of the first rollout: the drop, answered and seen by the server…
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'));
  await agent.idle();
  const before = await counted(agent);
  const answersBefore = world.harness.ingest.reports.length;
  // …then its retained baseline, answered a moment later, and the next rollout's candidate and activation.
  const retain = await assign(world.v1, 'active', 'activated');
  await assign(world.v2, 'candidate', 'installed');
  const activation = await assign(world.v2, 'active', 'activated');
  await agent.idle();

  const after = await counted(agent);
  const delta = (outcome: string) => (after[outcome] ?? 0) - (before[outcome] ?? 0);
  const activated = world.harness.ingest.reports
    .slice(answersBefore)
    .filter((report) => report.kind === 'assignment' && report.deviceId === deviceId && report.outcome === 'activated')
    .map((report) => report.kind === 'assignment' && [report.assignmentId, report.reason]);
  assert.deepEqual(activated, [[retain, 'already the active model'], [activation, null]], 'two activated answers, to two assignments');
  assert.equal(delta('installed'), 1);
  assert.equal(delta('activated'), 2, 'each answer counted once');
  assert.deepEqual(agent.slots.active?.version, world.v2.version);
});
