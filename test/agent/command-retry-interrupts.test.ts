import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SlotStateFile, type SlotState } from '../../agent/slot-state.ts';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { slowInference } from './slow-inference.ts';

/** docs/agent.md: a fleet command taken again on its timer interrupts a benchmark as a received one does (a rollback never waits for it). */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

test('a rollback taken again on its timer (the write of its answer failed) interrupts the benchmark running then instead of waiting for it', async (t) => {
  const deviceId = 'command-retry-interrupts';
  const { logger, lines } = recordingLogger();
  // A long benchmark: about 10 s (2,500 samples of two 2 ms runs), far longer than the rollback's retry timer.
  slowInference(t, 2);
  const { agent } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 300, benchmark: { latencySamples: 2_500, throughputBatches: 5, batchSize: 64 } });
  await waitFor(() => agent.connected, 5000, 'connected');
  for (const model of [world.v3, world.v1]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  // The write of the rollback's answer fails once, with an error that is not the disk's: a rollback
  // whose write the disk refuses (ENOSPC, EROFS) is carried out from memory instead of being taken
  // again (disk-takes-no-writes.test.ts); any other failure is taken again on the timer.
  let armed = false;
  const save = SlotStateFile.prototype.save;
  const carriesRollback = (state: SlotState) => state.unsentReports.some((report) => report.kind === 'assignment' && report.outcome === 'rolled-back');
  SlotStateFile.prototype.save = async function (this: SlotStateFile, next: SlotState) {
    if (armed && carriesRollback(next) && !carriesRollback(this.state)) {
      armed = false;
      throw new Error('the state write failed');
    }
    return save.call(this, next);
  };
  t.after(() => (SlotStateFile.prototype.save = save));
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await waitFor(() => lines.some((line) => line.msg === 'benchmark started' && line.candidate === '2'), 10_000, 'benchmark started');
  armed = true;
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).includes(rollback.id)), 10_000, 'the rollback failed once');
  // The benchmark started again after the first attempt (which interrupted the first run) failed.
  await waitFor(() => lines.filter((line) => line.msg === 'benchmark started').length >= 2, 10_000, 'the benchmark started again');
  await world.waitForReport(isAnswerTo(rollback.id), 120_000);
  await world.waitForReport(isBenchmarkFor(world.v2.id, deviceId), 120_000);
  await agent.idle();
  const reports = world.harness.ingest.reports.filter((report: Report) => report.deviceId === deviceId);
  const rolledBack = reports.findIndex(isAnswerTo(rollback.id));
  const benchmarked = reports.findIndex(isBenchmarkFor(world.v2.id, deviceId));
  assert.equal(rolledBack < benchmarked, true, `the retried rollback is answered before the benchmark report (rollback #${rolledBack}, benchmark #${benchmarked})`);
  const interrupted = lines.filter((line) => line.msg === 'benchmark interrupted; it runs again after that work').length;
  assert.equal(interrupted, 2, 'the benchmark was interrupted by the rollback and again by its retry');
});
