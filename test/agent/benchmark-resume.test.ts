import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { slowInference } from './slow-inference.ts';

/**
 * docs/agent.md: a stop interrupts a benchmark; it runs again at the next start — also when an
 * assignment was pending at the stop (resumed first, then the benchmark, if its candidate is still there).
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

test('a benchmark interrupted by an assignment still downloading at the stop runs again after the restart, after that assignment', async (t) => {
  const deviceId = 'bench-resume-1';
  const config = await world.config(deviceId, { site: 'osaka' });
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-bench-resume-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const { logger, lines } = recordingLogger();
  // A benchmark long enough to be interrupted while it runs: about 10 s (2,500 samples of two 2 ms runs).
  slowInference(t, 2);
  const first = await startAgent(t, world, deviceId, { config, dataDir, logger, benchmark: { latencySamples: 2_500, throughputBatches: 5, batchSize: 64 } });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');
  const active = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(active.id, 'activated'));
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'the candidate\'s benchmark started');

  // An activation of another model interrupts the benchmark; its download is slow, and the agent stops during it.
  world.http.throttle = { chunkBytes: 4096, delayMs: 50 };
  t.after(() => (world.http.throttle = undefined));
  const activation = await world.assign(deviceId, world.big, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'downloading model' && line.assignmentId === activation.id), 10_000, 'the download started');
  await first.stop();
  world.http.throttle = undefined;
  const stopped = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
  assert.equal(stopped.pending?.id, activation.id, 'the activation is pending at the stop');
  assert.equal(stopped.candidateBenchmarked, false, 'the candidate is not benchmarked at the stop');
  assert.equal(world.harness.ingest.reports.some(isBenchmarkFor(world.v2.id, deviceId)), false, 'no benchmark reported before the stop');

  // The restart resumes the activation, then the benchmark of the candidate, which stayed.
  const second = await startAgent(t, world, deviceId, { config, dataDir });
  await world.waitForReport(isOutcome(activation.id, 'activated'), 30_000);
  const report = (await world.waitForReport(isBenchmarkFor(world.v2.id, deviceId), 30_000)) as BenchmarkReport;
  assert.equal(report.active?.sha256, world.big.id, 'benchmarked next to the model active now');
  assert.equal(report.assignmentId, candidate.id);
  await second.agent.idle();
  assert.equal(second.agent.slots.candidate?.sha256, world.v2.id);
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
  assert.equal(state.candidateBenchmarked, true);
});
