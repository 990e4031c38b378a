import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { NOT_BENCHMARKED, type Agent } from '../../agent/agent.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { blockStateFile, restoreStateFile } from './blocked-state-file.ts';

/**
 * fleetprune_agent_assignments_total{outcome} counts every answer the agent sends to an assignment
 * or a fleet command, each once: the same answers, by outcome, as the server receives.
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

function received(deviceId: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const report of world.harness.ingest.reports) if (report.kind === 'assignment' && report.deviceId === deviceId) counts[report.outcome] = (counts[report.outcome] ?? 0) + 1;
  return counts;
}

test('every answer the agent sends is counted once by outcome: refused fleet commands, an activation of the active model, a candidate assigned again', async (t) => {
  const deviceId = 'metrics-1';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { holdout: undefined, logger });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const command = async (name: 'rollback' | 'drop-candidate', outcome: string) => {
    const sent = await publishFleetCommand(world.harness.broker, name, { deviceIds: [deviceId] }, { privateKey: world.privateKey });
    await world.waitForReport(isOutcome(sent.id, outcome));
  };
  const assign = async (artifact: typeof world.v1, role: 'active' | 'candidate', outcome: string) => {
    const sent = await world.assign(deviceId, artifact, role);
    await world.waitForReport(isOutcome(sent.id, outcome));
  };
  await assign(world.v1, 'active', 'activated');
  await assign(world.v1, 'active', 'activated'); // already the active model
  await command('rollback', 'refused'); // no previous model
  await command('drop-candidate', 'refused'); // no candidate
  await assign(world.v2, 'candidate', 'installed');
  await assign(world.v2, 'candidate', 'installed'); // already the candidate
  await assign(world.v1, 'candidate', 'refused'); // the active model as a candidate
  await command('drop-candidate', 'candidate-dropped');
  await assign(world.v3, 'active', 'activated');
  await command('rollback', 'rolled-back');
  await agent.idle();

  const expected = { activated: 3, refused: 3, installed: 2, 'candidate-dropped': 1, 'rolled-back': 1 };
  assert.deepEqual(received(deviceId), expected, 'the answers the server received');
  assert.deepEqual(await counted(agent), expected, 'fleetprune_agent_assignments_total by outcome');
  // Without a holdout nothing is benchmarked, and each install says so (it said nothing at all).
  assert.deepEqual(lines.filter((line) => line.msg === NOT_BENCHMARKED).map((line) => [line.level, line.version]), [[40, '2'], [40, '2']]);
});

test('a refusal the disk could not take is counted once: when it is sent from memory, not again when a state write records it', async (t) => {
  const deviceId = 'metrics-2';
  let unblock: (() => Promise<void>) | undefined;
  const { agent, dataDir } = await startAgent(t, world, deviceId, {
    holdout: undefined,
    assignmentRetryMs: 150,
    // No room for the model, nor (another process filled the disk) for the state file or the outbox.
    freeSpace: async () => {
      if (!unblock) {
        const stateFile = join(dataDir, 'state.json');
        const outbox = join(dataDir, 'outbox');
        const saved = (await blockStateFile(stateFile))!;
        await rm(outbox, { recursive: true });
        await writeFile(outbox, 'in the way');
        unblock = async () => {
          await restoreStateFile(stateFile, saved);
          await rm(outbox);
          await mkdir(outbox);
        };
      }
      return 0;
    },
  });
  const assignment = await world.assign(deviceId, world.v3, 'candidate');
  await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  await unblock!();
  await waitFor(async () => {
    const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
    return state.handledIds.includes(assignment.id) && state.unsentReports.length === 0;
  }, 10_000, 'the refusal recorded');
  await agent.idle();
  assert.deepEqual(await counted(agent), { refused: 1 });
  assert.deepEqual(received(deviceId), { refused: 1 });
});

/**
 * A rollout rolled back while its candidate only sits in the candidate slot sends the device a
 * drop-candidate command and retains its baseline as active under a second id (StoreFleetPort.revert).
 * The agent answers the drop first; the retained baseline, already the active model, is answered
 * `activated` after it (docs/agent.md: an activation of the model already active is counted). So a
 * count read as soon as the server has the drop's answer (the acceptance test's "candidates cleared")
 * can precede that answer, which then falls in the next rollout's count: two `activated` answers,
 * to two assignments, each counted once.
 */
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
