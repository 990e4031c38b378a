import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { SlotStateFile, type SlotState } from '../../agent/slot-state.ts';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { signFleetCommand } from '../../shared/protocol/message-signature.ts';
import { encodePayload } from '../../shared/protocol/parse-message.ts';
import { FleetCommandSchema } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC } from '../../shared/protocol/topics.ts';
import { tempDir } from '../helpers/cli.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { failBenchmarkWrites } from './benchmark-write-faults.ts';

/**
 * docs/agent.md: an activation is given up when a rollback issued after it was carried out (a rollback
 * always wins over an activation issued before it, by the server's issue times, however often the
 * activation was taken), or a drop-candidate issued after it dropped its model; and an activation that
 * owned its candidate's benchmark and is answered without it leaves that benchmark to run on its own.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());


test('an activation waiting for its retry (its benchmark report not saved) is refused when a rollback is carried out meanwhile, never undoing it', async (t) => {
  const deviceId = 'retake-after-rollback';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 2000 });
  await waitFor(() => agent.connected, 5000, 'connected');
  for (const model of [world.v3, world.v1]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  let full = true;
  failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => String(line.msg).startsWith('benchmark report not saved')), 20_000, 'the install\'s benchmark report not saved');
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 20_000);
  full = false;
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `the activation is not carried out over the later rollback: ${JSON.stringify(answer)}`);
  assert.match(String(answer.kind === 'assignment' && answer.reason), /^not activated: a rollback issued after it was carried out \(now active 3, candidate 2\)$/);
  assert.equal(agent.slots.active?.sha256, world.v3.id, 'the rollback stands');
});

test('an activation left pending when a rollback was carried out is refused when the next start resumes it, never undoing the rollback', async (t) => {
  const deviceId = 'retake-after-restart';
  const { logger, lines } = recordingLogger();
  const dataDir = await tempDir(t, 'fleetprune-agent-retake-restart-');
  // No retry before the stop: the restart takes the activation again.
  const first = await startAgent(t, world, deviceId, { logger, dataDir, assignmentRetryMs: 600_000 });
  await waitFor(() => first.agent.connected, 5000, 'connected');
  for (const model of [world.v3, world.v1]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  let full = true;
  failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => String(line.msg).startsWith('benchmark report not saved')), 20_000, 'the install\'s benchmark report not saved');
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 20_000);
  await first.agent.idle();
  await first.stop();
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as SlotState;
  assert.equal(state.pending?.id, activation.id, 'the activation is still pending after the rollback');
  full = false;
  const second = await startAgent(t, world, deviceId, { logger, dataDir });
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await second.agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `the activation is not carried out over the rollback: ${JSON.stringify(answer)}`);
  assert.match(String(answer.kind === 'assignment' && answer.reason), /^not activated: a rollback issued after it was carried out \(now active 3, candidate 2\)$/);
  assert.equal(second.agent.slots.active?.sha256, world.v3.id, 'the rollback stands');
});

test('an activation that owned its candidate\'s benchmark, superseded while it waits for its retry: the candidate still there is benchmarked all the same', async (t) => {
  const deviceId = 'retake-superseded';
  const { logger, lines } = recordingLogger();
  const { agent, dataDir } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 2000 });
  await waitFor(() => agent.connected, 5000, 'connected');
  const first = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  let full = true;
  failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => String(line.msg).startsWith('benchmark report not saved')), 20_000, 'the install\'s benchmark report not saved');
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  // A newer assignment (another model made active) supersedes it while it waits for its retry.
  const other = await world.assign(deviceId, world.v3, 'active');
  await world.waitForReport(isOutcome(other.id, 'activated'), 20_000);
  full = false;
  const answer = await world.waitForReport(isAnswerTo(activation.id), 20_000);
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', 'superseded');
  const ofV2 = isBenchmarkFor(world.v2.id, deviceId);
  await world.waitForReport(ofV2, 20_000);
  await agent.idle();
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as SlotState;
  assert.equal(state.candidate?.sha256, world.v2.id, 'v2 still the candidate');
  assert.equal(state.candidateBenchmarked, true, 'and benchmarked');
  const benchmarks = world.harness.ingest.reports.filter(ofV2);
  assert.equal(benchmarks.length, 1, `one benchmark report for v2, got ${benchmarks.length}`);
});

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });

/** Fails the state writes `when` picks. */
function failSaves(t: TestContext, when: (prev: SlotState, next: SlotState) => boolean): void {
  const save = SlotStateFile.prototype.save;
  SlotStateFile.prototype.save = async function (this: SlotStateFile, next: SlotState) {
    if (when(this.state, next)) throw enospc();
    return save.call(this, next);
  };
  t.after(() => (SlotStateFile.prototype.save = save));
}

test('an activation whose first take could not be saved (a full disk) is refused after a rollback issued after it, never undoing it', async (t) => {
  const deviceId = 'retake-unsaved-first';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 2000 });
  await waitFor(() => agent.connected, 5000, 'connected');
  for (const model of [world.v1, world.v3]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  let full = true;
  failSaves(t, (prev, next) => full && next.pending?.sha256 === world.v2.id && prev.pending?.sha256 !== world.v2.id);
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  full = false;
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 20_000);
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `a rollback issued after the activation wins: ${JSON.stringify(answer)}`);
  assert.match(String(answer.kind === 'assignment' && answer.reason), /^not activated: a rollback issued after it was carried out \(now active 1, candidate none\)$/);
  assert.equal(agent.slots.active?.sha256, world.v1.id, 'the rollback stands');
});

test('a drop-candidate of another model does not make an activation waiting for its retry moot', async (t) => {
  const deviceId = 'retake-drop-unrelated';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 2000 });
  await waitFor(() => agent.connected, 5000, 'connected');
  const first = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await agent.idle();
  let full = true;
  const activatesV3 = (state: SlotState) => state.unsentReports.some((report) => report.kind === 'assignment' && report.outcome === 'activated' && report.sha256 === world.v3.id);
  failSaves(t, (prev, next) => full && activatesV3(next) && !activatesV3(prev));
  const activation = await world.assign(deviceId, world.v3, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  full = false;
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'), 20_000);
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'activated', `dropping candidate v2 does not contradict activating v3: ${JSON.stringify(answer)}`);
  assert.equal(agent.slots.active?.sha256, world.v3.id, 'v3 active');
});

test('an activation issued after a rollback that reaches the device later is carried out, not refused as moot', async (t) => {
  const deviceId = 'retake-issued-after';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 2000 });
  await waitFor(() => agent.connected, 5000, 'connected');
  for (const model of [world.v3, world.v1]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  // The server issues the rollback first; it reaches the device only after the activation below.
  const unsigned = FleetCommandSchema.omit({ signature: true }).parse({ schema: 1, id: 'rollback-issued-early', issuedAt: new Date(Date.now() - 1000).toISOString(), command: 'rollback', selector: { deviceIds: [deviceId] }, seq: Date.now() * 1000 });
  const rollback = signFleetCommand(unsigned, world.privateKey);
  let full = true;
  failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => String(line.msg).startsWith('benchmark report not saved')), 20_000, 'the install\'s benchmark report not saved');
  const activation = await world.assign(deviceId, world.v2, 'active');
  assert.equal(Date.parse(activation.issuedAt) > Date.parse(rollback.issuedAt), true, 'the activation is issued after the rollback');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)), 20_000, 'the activation failed once');
  await world.harness.broker.publish(FLEET_COMMANDS_TOPIC, encodePayload(rollback), { qos: 1, retain: false });
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 20_000);
  full = false;
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'activated', `the activation was issued after the rollback: ${JSON.stringify(answer)}`);
  assert.equal(agent.slots.active?.sha256, world.v2.id, 'v2 active');
});
