import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

// docs/rollout-spec.md: "Goes to" means the device installs the candidate next to its active model
// and benchmarks both side by side; a relative check counts only reports from since the rollout
// started. docs/agent.md: `candidate` → candidate slot, then benchmark it next to the active model.
test('a new assignment of the candidate already in the slot is answered installed and benchmarked again, for that assignment', async (t) => {
  const { agent } = await startAgent(t, world, 'docs-rebench-1');
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign('docs-rebench-1', world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));

  const first = await world.assign('docs-rebench-1', world.v2, 'candidate');
  await world.waitForReport(isOutcome(first.id, 'installed'));
  await world.waitForReport((report) => isBenchmarkFor(world.v2.id, 'docs-rebench-1')(report) && (report as BenchmarkReport).assignmentId === first.id);

  // The same version again under a new assignment (a rollout of what an operator assigned before).
  const again = await world.assign('docs-rebench-1', world.v2, 'candidate');
  await world.waitForReport(isOutcome(again.id, 'installed'));
  const report = (await world.waitForReport((r) => isBenchmarkFor(world.v2.id, 'docs-rebench-1')(r) && (r as BenchmarkReport).assignmentId === again.id, 20_000)) as BenchmarkReport;
  assert.equal(report.active?.sha256, world.v1.id);
  assert.equal(report.candidate.sha256, world.v2.id);
  assert.equal(agent.slots.candidate?.sha256, world.v2.id);
});
