import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import type { BenchmarkReport, Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { benchmarkCounts, failBenchmarkWrites } from './benchmark-write-faults.ts';

/**
 * docs/agent.md: what needs the disk waits for room. A candidate's benchmark whose report the
 * device's storage cannot take (a full disk, an I/O error) runs again once it can; a local storage
 * failure is never reported as the model's benchmark failure.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const benchmarkOutcomeOf = (assignmentId: string) => (report: Report) =>
  (report.kind === 'benchmark' && report.assignmentId === assignmentId) || isOutcome(assignmentId, 'benchmark-failed')(report);

async function withActiveV1(t: TestContext, deviceId: string) {
  const { logger, lines } = recordingLogger();
  const running = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 150 });
  await waitFor(() => running.agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  await running.agent.idle();
  return { ...running, lines };
}

test('a disk full when the benchmark report is saved: nothing is reported as benchmark-failed, and the report is saved again until there is room', async (t) => {
  const deviceId = 'bench-full-1';
  const { agent, dataDir, lines } = await withActiveV1(t, deviceId);
  let full = true;
  const writes = failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  // The benchmark ran, its report could not be saved, and saving it was tried again (twice) while the disk stayed full.
  await waitFor(() => writes.attempts() >= 3, 20_000, 'the report\'s save tried three times');
  assert.equal(world.harness.ingest.reports.some(benchmarkOutcomeOf(candidate.id)), false, 'nothing reported while the disk is full');
  assert.deepEqual(await benchmarkCounts(agent), {}, 'no benchmark counted while none is reported');
  const waits = lines.filter((line) => line.msg === 'benchmark report not saved (the device\'s storage failed); it is kept and saved again on a timer (measured again only if its candidate, assignment or active model changed)');
  assert.deepEqual(waits.slice(0, 2).map((line) => line.retryInMs), [150, 300], 'the wait doubles');
  assert.equal(waits[0]?.err, 'ENOSPC: no space left on device, write');

  // Room again: the next run's report is saved and sent.
  full = false;
  const report = (await world.waitForReport(benchmarkOutcomeOf(candidate.id), 20_000)) as BenchmarkReport;
  assert.equal(report.kind, 'benchmark');
  assert.equal(report.candidate.sha256, world.v2.id);
  assert.equal(report.active?.sha256, world.v1.id);
  await agent.idle();
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(candidate.id)).map((answer) => answer.kind === 'assignment' && answer.outcome), ['installed']);
  assert.deepEqual(await benchmarkCounts(agent), { ok: 1 });
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
  assert.equal(state.candidateBenchmarked, true);
});

test('a one-off I/O error saving the benchmark report is not reported as the candidate\'s benchmark failure: the benchmark runs again and its report is sent', async (t) => {
  const deviceId = 'bench-eio-1';
  const { agent } = await withActiveV1(t, deviceId);
  failBenchmarkWrites(t, 'EIO', (attempt) => attempt === 1);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  const outcome = await world.waitForReport(benchmarkOutcomeOf(candidate.id), 20_000);
  assert.equal(outcome.kind, 'benchmark', `a benchmark report, not ${JSON.stringify(outcome)}`);
  await agent.idle();
  assert.equal(world.harness.ingest.reports.some(isOutcome(candidate.id, 'benchmark-failed')), false, 'no benchmark-failed answer');
  assert.deepEqual(await benchmarkCounts(agent), { ok: 1 });
});

test('an activation whose candidate\'s benchmark report the disk cannot take waits: it activates after the benchmark is reported', async (t) => {
  const deviceId = 'bench-full-2';
  const { agent } = await withActiveV1(t, deviceId);
  // The install's benchmark cannot be saved; the activation runs the benchmark first, and waits for its report.
  let full = true;
  const writes = failBenchmarkWrites(t, 'ENOSPC', () => full);
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => writes.attempts() >= 3, 20_000, 'the report\'s save tried three times');
  assert.equal(agent.slots.active?.sha256, world.v1.id, 'not activated without its benchmark report');
  assert.equal(world.harness.ingest.reports.some(isAnswerTo(activation.id)), false, 'the activation is not answered yet');
  full = false;
  await world.waitForReport(isOutcome(activation.id, 'activated'), 20_000);
  const benchmarks = world.harness.ingest.reports.filter(isBenchmarkFor(world.v2.id, deviceId));
  assert.equal(benchmarks.length >= 1, true, 'the candidate\'s benchmark reported before its activation');
  assert.equal(world.harness.ingest.reports.some((report) => report.kind === 'assignment' && report.outcome === 'benchmark-failed' && report.deviceId === deviceId), false, 'no benchmark-failed answer');
});
