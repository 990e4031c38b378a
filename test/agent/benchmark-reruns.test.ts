import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { Holdout } from '../../agent/holdout.ts';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { BenchmarkReport, Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { benchmarkCounts, failBenchmarkWrites } from './benchmark-write-faults.ts';
import { slowInference } from './slow-inference.ts';

/**
 * docs/agent.md: a benchmark that runs again (interrupted, or its report not saved) answers the
 * candidate's assignment of now; the activation of an unbenchmarked candidate is not answered until
 * its benchmark is reported, also when a fleet command interrupts that benchmark (the command goes
 * first; the activation is given up when the command made it moot); one retry loop, not two,
 * while the disk cannot take the report, and the measured report is saved again, not measured again.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());


/** A benchmark report of candidate v2 by this device (the world's agents all benchmark v2). */
const benchmarkOfV2 = (deviceId: string) => isBenchmarkFor(world.v2.id, deviceId);
const mine = (deviceId: string) => world.harness.ingest.reports.filter((report: Report) => report.deviceId === deviceId);
/**
 * With slowInference(t, SLOW_RUN_MS), a benchmark of two models that takes about 10 s of sleep
 * (2,500 samples of 2 runs of 2 ms) whatever the machine: long enough to interrupt while it runs.
 */
const SLOW_RUN_MS = 2;
const SLOW_BENCHMARK = { latencySamples: 2_500, throughputBatches: 5, batchSize: 64 };
/** The same, about 4 s. */
const SHORTER_BENCHMARK = { latencySamples: 1_000, throughputBatches: 5, batchSize: 64 };

/**
 * Candidate v2 installed by assignment A, its benchmark for A running; the same candidate assigned
 * again (B) interrupts it; B's benchmark outcome cannot be saved once (EIO). The rerun queued for A
 * and the retry for B must both answer B, the candidate's assignment of now.
 */
async function assignedAgainWhileBenchmarking(t: TestContext, deviceId: string) {
  const { logger, lines } = recordingLogger();
  slowInference(t, SLOW_RUN_MS);
  const { agent, dataDir } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 150, benchmark: SHORTER_BENCHMARK });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  const a = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(a.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'A\'s benchmark started');
  failBenchmarkWrites(t, 'EIO', (attempt) => attempt === 1);
  const b = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(b.id, 'installed'));
  return { agent, dataDir, lines, a, b };
}

test('a candidate assigned again (B) while its benchmark for A runs, B\'s report not saved once: the benchmark that runs again answers B, not A', async (t) => {
  const deviceId = 'bench-rerun-1';
  const { agent, dataDir, a, b } = await assignedAgainWhileBenchmarking(t, deviceId);
  // While it runs, /metrics says so: since when, for which candidate (an analysis finds no report meanwhile).
  const running = async () => (await agent.metrics.benchmarkStarted.get()).values.map((value) => ({ ...value.labels, ageS: Date.now() / 1000 - value.value }));
  // (B's install interrupted A's: the benchmark runs again, for B.)
  await waitFor(async () => (await running()).length === 1, 10_000, 'a benchmark running');
  const during = await running();
  assert.deepEqual([during[0]!.model, during[0]!.version], [world.v2.manifest.name, '2']);
  assert.ok(during[0]!.ageS >= 0 && during[0]!.ageS < 60, JSON.stringify(during));
  const report = (await world.waitForReport(benchmarkOfV2(deviceId), 30_000)) as BenchmarkReport;
  await agent.idle();
  assert.deepEqual(await running(), [], 'no series once no benchmark runs');
  assert.equal(report.assignmentId, b.id, `the benchmark answers the newest assignment of the candidate (B ${b.id}), not A ${a.id}`);
  const benchmarks = mine(deviceId).filter(isBenchmarkFor(world.v2.id, deviceId)).map((r) => r.kind === 'benchmark' && r.assignmentId);
  assert.deepEqual(benchmarks, [b.id], 'one benchmark report, for B');
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
  assert.equal(state.candidateAssignmentId, b.id);
  assert.equal(state.candidateBenchmarked, true);
  assert.deepEqual(await benchmarkCounts(agent), { ok: 1 });
});

test('a candidate assigned again (B) while its benchmark for A runs, B\'s benchmark-failed not saved once: the failure answers B, not A', async (t) => {
  const deviceId = 'bench-rerun-2';
  // The candidate's benchmark fails for real from B's benchmark on (its holdout column does not read).
  let broken = false;
  const forModel = Holdout.prototype.forModel;
  Holdout.prototype.forModel = function (this: Holdout, reader: Parameters<Holdout['forModel']>[0]) {
    if (broken && (reader as { version?: string }).version === '2') throw new Error('holdout row 1: column "f3" is not a number');
    return forModel.call(this, reader);
  };
  t.after(() => (Holdout.prototype.forModel = forModel));
  const { logger, lines } = recordingLogger();
  slowInference(t, SLOW_RUN_MS);
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 150, benchmark: SHORTER_BENCHMARK });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  const a = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(a.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'A\'s benchmark started');
  broken = true;
  failBenchmarkWrites(t, 'EIO', (attempt) => attempt === 1);
  const b = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(b.id, 'installed'));
  const failed = await world.waitForReport((report) => report.kind === 'assignment' && report.outcome === 'benchmark-failed' && report.deviceId === deviceId, 30_000);
  await agent.idle();
  assert.equal(failed.assignmentId, b.id, `benchmark-failed answers B ${b.id}, not A ${a.id}`);
  assert.deepEqual(mine(deviceId).filter((r) => r.kind === 'assignment' && r.outcome === 'benchmark-failed').map((r) => r.assignmentId), [b.id]);
  assert.deepEqual(await benchmarkCounts(agent), { failed: 1 });
});

/**
 * An activation of candidate v2 that runs the candidate's benchmark itself (the install's benchmark
 * was interrupted by an assignment of another model, which the activation then superseded); returns
 * once that benchmark is running.
 */
async function activationBenchmarking(t: TestContext, deviceId: string, actives: (typeof world.v1)[]) {
  const { logger, lines } = recordingLogger();
  slowInference(t, SLOW_RUN_MS);
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 60_000, benchmark: SLOW_BENCHMARK });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  for (const artifact of actives) {
    const active = await world.assign(deviceId, artifact, 'active');
    await world.waitForReport(isOutcome(active.id, 'activated'));
  }
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'the install\'s benchmark started');
  // Another model's activation interrupts it; its download is slow, and the candidate's activation supersedes it.
  world.http.throttle = { chunkBytes: 4096, delayMs: 50 };
  t.after(() => (world.http.throttle = undefined));
  const other = await world.assign(deviceId, world.big, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'downloading model' && line.assignmentId === other.id), 10_000, 'the other model\'s download started');
  const activation = await world.assign(deviceId, world.v2, 'active');
  await world.waitForReport(isOutcome(other.id, 'refused'), 10_000);
  world.http.throttle = undefined;
  const received = () => lines.findIndex((line) => line.msg === 'assignment received' && line.assignmentId === activation.id);
  await waitFor(() => received() >= 0 && lines.slice(received()).some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'the activation\'s benchmark started');
  return { agent, lines, candidate, activation };
}

test('a rollback interrupting the benchmark an activation runs first goes first; the activation is answered only after the candidate\'s benchmark is reported', async (t) => {
  const deviceId = 'bench-rerun-3';
  const { agent, activation } = await activationBenchmarking(t, deviceId, [world.v1]);
  // Nothing to roll back to: the rollback is refused and changes nothing, so the activation stands.
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isAnswerTo(rollback.id), 30_000);
  // After the candidate's benchmark, which the rollback interrupted and which runs again whole.
  await world.waitForReport(isAnswerTo(activation.id), 180_000);
  await agent.idle();
  const reports = mine(deviceId);
  const at = (match: (report: Report) => boolean) => reports.findIndex(match);
  const benchmark = at(isBenchmarkFor(world.v2.id, deviceId));
  assert.notEqual(benchmark, -1, 'the candidate\'s benchmark is reported');
  assert.equal(reports.some(isOutcome(activation.id, 'activated')), true, 'the activation is carried out');
  assert.equal(benchmark < at(isOutcome(activation.id, 'activated')), true, 'the benchmark is reported before the activation is answered');
  assert.equal(at(isAnswerTo(rollback.id)) < at(isAnswerTo(activation.id)), true, 'the rollback is answered before the activation');
  assert.equal(agent.slots.active?.sha256, world.v2.id);
});

test('a drop-candidate interrupting the benchmark an activation runs first makes the activation moot: it is refused, never carried out', async (t) => {
  const deviceId = 'bench-rerun-4';
  const { agent, activation } = await activationBenchmarking(t, deviceId, [world.v1]);
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isAnswerTo(drop.id), 30_000);
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  await agent.idle();
  assert.equal(mine(deviceId).some(isOutcome(drop.id, 'candidate-dropped')), true, 'the drop is carried out');
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `the activation is refused, not ${JSON.stringify(answer)}`);
  assert.match(String(answer.kind === 'assignment' && answer.reason), /^not activated: a drop-candidate issued after it dropped its model from the candidate slot \(now active 1, candidate none\)$/);
  assert.equal(mine(deviceId).some(isOutcome(activation.id, 'activated')), false, 'never activated');
  assert.deepEqual(agent.slots, { active: agent.slots.active, candidate: null, previous: null });
  assert.equal(agent.slots.active?.sha256, world.v1.id, 'v1 still active');
});

test('a rollback to a previous model interrupting the benchmark an activation runs first wins: the activation is refused, and the candidate is benchmarked next to the model rolled back to', async (t) => {
  const deviceId = 'bench-rerun-5';
  const { agent, candidate, activation } = await activationBenchmarking(t, deviceId, [world.v3, world.v1]);
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 30_000);
  const answer = await world.waitForReport(isAnswerTo(activation.id), 30_000);
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `the activation is refused, not ${JSON.stringify(answer)}`);
  const report = (await world.waitForReport(benchmarkOfV2(deviceId), 60_000)) as BenchmarkReport;
  await agent.idle();
  assert.equal(report.active?.sha256, world.v3.id, 'benchmarked next to the model rolled back to');
  assert.equal(report.assignmentId, candidate.id);
  assert.equal(agent.slots.active?.sha256, world.v3.id, 'the rollback stands');
  assert.equal(agent.slots.candidate?.sha256, world.v2.id, 'the candidate stays');
});

test('an activation whose candidate\'s benchmark report the disk cannot take: one retry loop (the activation\'s), and the benchmark is measured once, its report saved again', async (t) => {
  const deviceId = 'bench-rerun-6';
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 100 });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  let full = true;
  const writes = failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  const notSaved = 'benchmark report not saved (the device\'s storage failed); it is kept and saved again on a timer (measured again only if its candidate, assignment or active model changed)';
  await waitFor(() => lines.some((line) => line.msg === notSaved), 10_000, 'the install\'s benchmark report not saved');
  const activation = await world.assign(deviceId, world.v2, 'active');
  const received = () => lines.findIndex((line) => line.msg === 'assignment received' && line.assignmentId === activation.id);
  const activationRetries = () => lines.filter((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`assignment ${activation.id}`)).length;
  await waitFor(() => activationRetries() >= 5, 20_000, 'the activation taken again five times');
  const since = lines.slice(received());
  assert.deepEqual(since.filter((line) => line.msg === notSaved), [], 'no benchmark retry timer runs once the activation owns the benchmark');
  assert.equal(lines.filter((line) => line.msg === 'benchmark started').length, 1, 'measured once: the activation saves the report measured at the install again');
  assert.equal(writes.attempts() >= 6, true, `the report's save was tried again with each retry (${writes.attempts()})`);
  assert.equal(agent.slots.active?.sha256, world.v1.id, 'not activated without its benchmark report');

  full = false;
  await world.waitForReport(isOutcome(activation.id, 'activated'), 20_000);
  await agent.idle();
  const benchmarks = mine(deviceId).filter(isBenchmarkFor(world.v2.id, deviceId));
  assert.equal(benchmarks.length, 1, 'one benchmark report');
  assert.equal(benchmarks[0]?.kind === 'benchmark' && benchmarks[0].assignmentId, candidate.id);
  assert.deepEqual(await benchmarkCounts(agent), { ok: 1 });
  assert.equal(lines.filter((line) => line.msg === 'benchmark started').length, 1, 'still measured once');
});

test('a rollback that arrives after an activation of the candidate being benchmarked is queued does not wait for that benchmark: it goes first, then the activation benchmarks and activates', async (t) => {
  const deviceId = 'bench-rerun-7';
  const { logger, lines } = recordingLogger();
  slowInference(t, SLOW_RUN_MS);
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 60_000, benchmark: SLOW_BENCHMARK });
  await waitFor(() => agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'the install\'s benchmark started');
  // The activation waits for the running benchmark (it does not interrupt it); the rollback does.
  const activation = await world.assign(deviceId, world.v2, 'active');
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isAnswerTo(rollback.id), 30_000);
  // After the candidate's benchmark, which the rollback interrupted and which runs again whole.
  await world.waitForReport(isAnswerTo(activation.id), 180_000);
  await agent.idle();
  const reports = mine(deviceId);
  const at = (match: (report: Report) => boolean) => reports.findIndex(match);
  // Nothing to roll back to while v1 is active and no activation came before it.
  assert.equal(reports.some(isOutcome(rollback.id, 'refused')), true, `the rollback ran before the activation (nothing to roll back to): ${JSON.stringify(reports.find(isAnswerTo(rollback.id)))}`);
  assert.equal(at(isAnswerTo(rollback.id)) < at(isAnswerTo(activation.id)), true, 'the rollback is answered before the activation');
  assert.notEqual(at(benchmarkOfV2(deviceId)), -1, 'the candidate\'s benchmark is reported');
  assert.equal(at(benchmarkOfV2(deviceId)) < at(isOutcome(activation.id, 'activated')), true, 'the benchmark is reported before the activation is answered');
  assert.equal(agent.slots.active?.sha256, world.v2.id);
});
