import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { blockStateFile, restoreStateFile } from './blocked-state-file.ts';
import { slowInference } from './slow-inference.ts';
import { SlotStateFile, type SlotState } from '../../agent/slot-state.ts';
import { encodePayload } from '../../shared/protocol/parse-message.ts';
import { FLEET_COMMANDS_TOPIC } from '../../shared/protocol/topics.ts';

/**
 * Fleet commands (the server's drop of a candidate when a rollout is reverted): taken again when
 * the device fails them, and not held up by a download or benchmark ahead of them.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');
const dropFor = (deviceId: string) => publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });

/** An agent with v1 active and v3 its benchmarked candidate. */
async function withCandidate(deviceId: string, t: Parameters<typeof startAgent>[0], options: Parameters<typeof startAgent>[3] = {}) {
  const running = await startAgent(t, world, deviceId, options);
  const v1 = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  await world.assign(deviceId, world.v3, 'candidate');
  await world.waitForReport(isBenchmarkFor(world.v3.id, deviceId));
  await running.agent.idle();
  return running;
}

/**
 * An agent with v1 active, assigned v3 as candidate; `send` runs the moment v3's model is verified
 * and installed (before the install's benchmark). Resolves with what `send` sent.
 */
async function whenCandidateInstalls<T>(t: Parameters<typeof startAgent>[0], deviceId: string, send: () => Promise<T>) {
  let onInstalled: (() => void) | undefined;
  const logger = pino({ level: 'info' }, {
    write: (line: string) => {
      if (JSON.parse(line).msg === 'model verified and installed') onInstalled?.();
    },
  });
  const { agent } = await startAgent(t, world, deviceId, { logger });
  const v1 = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  let sent: Promise<T> | undefined;
  onInstalled = () => {
    onInstalled = undefined;
    sent = send();
  };
  const v3 = await world.assign(deviceId, world.v3, 'candidate');
  await world.waitForReport(isOutcome(v3.id, 'installed'), 10_000);
  await waitFor(() => sent !== undefined, 10_000, 'sent at the install');
  return { agent, sent: await sent! };
}

test('on a state file the disk cannot write, a drop is carried out from memory at once, a refused command is taken again on a timer, and both are answered once the disk takes them', async (t) => {
  const { logger, lines } = recordingLogger();
  const { agent, dataDir } = await withCandidate('cmd-retry', t, { logger, assignmentRetryMs: 150, heartbeatIntervalMs: 200 });
  const stateFile = join(dataDir, 'state.json');
  const saved = (await blockStateFile(stateFile))!;

  const drop = await dropFor('cmd-retry');
  await waitFor(() => agent.slots.candidate === null, 10_000, 'the candidate dropped from memory');
  assert.equal(lines.some((line) => line.commandId === drop.id && line.msg.startsWith('dropped the candidate in memory: the disk takes no writes')), true, 'the log says so');
  // Nothing left to drop: the refusal changes nothing on the device and waits for the disk.
  const again = await dropFor('cmd-retry');
  const failures = () => lines.filter((line) => line.msg === 'agent task failed' && String(line.task).endsWith(`command ${again.id}`));
  await waitFor(() => failures().length >= 2, 10_000, 'two failed attempts');
  assert.deepEqual(failures().slice(0, 2).map((line) => line.retryInMs), [150, 300]);
  assert.equal(world.harness.ingest.reports.some((report) => isAnswerTo(drop.id)(report) || isAnswerTo(again.id)(report)), false, 'neither answered before it is recorded');

  await restoreStateFile(stateFile, saved);
  const dropped = await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'), 10_000);
  assert.equal(dropped.kind === 'assignment' && dropped.version, '3');
  const refused = await world.waitForReport(isOutcome(again.id, 'refused'), 10_000);
  assert.equal(reasonOf(refused), 'no candidate to drop');
  assert.equal(agent.slots.candidate, null);
  await agent.idle();
  const state = JSON.parse(await readFile(stateFile, 'utf8')) as SlotState;
  assert.deepEqual([state.candidate, state.handledIds.includes(drop.id), state.handledIds.includes(again.id)], [null, true, true], 'both recorded');
});

test('a fleet command received when the disk cannot record it is carried out from memory, once: a redelivery does not apply it again', async (t) => {
  const deviceId = 'cmd-unrecorded';
  const { logger, lines } = recordingLogger();
  const { agent, dataDir } = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 150 });
  for (const model of [world.v1, world.v3]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  // Every write that would record the rollback as received fails (its answer's write does not).
  const rollbackId = 'rollback-unrecorded-0001';
  const save = SlotStateFile.prototype.save;
  SlotStateFile.prototype.save = async function (this: SlotStateFile, next: SlotState) {
    if (next.pendingCommands?.some((command) => command.id === rollbackId)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    return save.call(this, next);
  };
  t.after(() => (SlotStateFile.prototype.save = save));
  const rollback = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey }, rollbackId);
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 10_000);
  assert.equal(lines.some((line) => line.msg === 'the fleet command received cannot be recorded on disk; carrying it out from memory' && line.commandId === rollback.id), true, 'the unrecorded receipt is logged');
  // The broker delivers it again (a reconnect), then a drop: the rollback is not applied twice.
  await world.harness.broker.publish(FLEET_COMMANDS_TOPIC, encodePayload(rollback), { qos: 1, retain: false });
  const drop = await dropFor(deviceId);
  await world.waitForReport(isAnswerTo(drop.id), 10_000);
  await agent.idle();
  assert.equal(world.harness.ingest.reports.filter(isAnswerTo(rollback.id)).length, 1, 'answered once');
  assert.equal(agent.slots.active?.sha256, world.v1.id, 'rolled back once, to v1');
  const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as SlotState;
  assert.equal(state.handledIds.includes(rollback.id), true, 'recorded as handled');
  assert.deepEqual(state.pendingCommands, [], 'nothing left to resume');
});

test('a failed fleet command is not taken again once a newer assignment came: that one decides what the device runs', async (t) => {
  const { logger, lines } = recordingLogger();
  const { agent, dataDir } = await withCandidate('cmd-stale', t, { logger, assignmentRetryMs: 150 });
  const stateFile = join(dataDir, 'state.json');
  const saved = (await blockStateFile(stateFile))!;

  // The drop is carried out from memory; a second one, with nothing left to drop, is a refusal
  // that needs the disk: it fails, and waits for its retry.
  const drop = await dropFor('cmd-stale');
  await waitFor(() => agent.slots.candidate === null, 10_000, 'the candidate dropped from memory');
  const again = await dropFor('cmd-stale');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && line.task === `command ${again.id}`), 10_000, 'the second drop failed');
  const v2 = await world.assign('cmd-stale', world.v2, 'candidate');
  await waitFor(() => lines.some((line) => line.msg === 'not taking a failed fleet command again: a newer assignment or command came since' && line.commandId === again.id), 10_000, 'the second drop given up');
  await restoreStateFile(stateFile, saved);
  await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'), 10_000);
  await world.waitForReport(isOutcome(v2.id, 'installed'), 10_000);
  await agent.idle();
  assert.equal(agent.slots.candidate?.version, '2', 'the newer candidate stays');
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(again.id)), [], 'the given-up drop is never answered');
});

test('a drop of the candidate stops the download of a candidate assigned before it, instead of waiting for it (and its benchmark)', async (t) => {
  const { agent } = await startAgent(t, world, 'cmd-download');
  const v1 = await world.assign('cmd-download', world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'));
  // About 2 MB at 16 KB per 50 ms: over six seconds.
  world.http.throttle = { chunkBytes: 16 * 1024, delayMs: 50 };
  t.after(() => (world.http.throttle = undefined));
  const big = await world.assign('cmd-download', world.big, 'candidate');
  await waitFor(() => world.http.blobRequests().some((request) => request.path.endsWith(world.big.manifest.files['model.onnx']!.sha256)), 10_000, 'the download under way');

  const sent = Date.now();
  const drop = await dropFor('cmd-download');
  const answer = await world.waitForReport(isAnswerTo(drop.id), 10_000);
  const waitedMs = Date.now() - sent;
  assert.equal(answer.kind === 'assignment' && `${answer.outcome}: ${answer.reason}`, 'refused: no candidate to drop');
  assert.ok(waitedMs < 3000, `answered in ${waitedMs} ms, not after the download`);
  const cancelled = await world.waitForReport(isAnswerTo(big.id), 10_000);
  assert.equal(cancelled.kind === 'assignment' && cancelled.outcome, 'refused');
  assert.equal(reasonOf(cancelled), `cancelled by drop-candidate ${drop.id}`);
  await agent.idle();
  assert.equal(agent.slots.candidate, null);
  assert.equal(world.harness.ingest.reports.some(isBenchmarkFor(world.big.id, 'cmd-download')), false, 'no benchmark of the cancelled candidate');
});

test('a drop that arrives while the candidate installs goes before that candidate\'s benchmark, which then has no candidate to run for', async (t) => {
  const { agent, sent: drop } = await whenCandidateInstalls(t, 'cmd-install', () => dropFor('cmd-install'));
  const dropped = await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'), 10_000);
  assert.equal(dropped.kind === 'assignment' && dropped.version, '3');
  await agent.idle();
  assert.equal(agent.slots.candidate, null);
  assert.equal(world.harness.ingest.reports.some(isBenchmarkFor(world.v3.id, 'cmd-install')), false, 'the benchmark stepped aside, and found no candidate after the drop');
});

test('the activation of a candidate that arrives while it installs still waits for its benchmark (the evidence a rollout counts)', async (t) => {
  const { agent, sent: activation } = await whenCandidateInstalls(t, 'act-install', () => world.assign('act-install', world.v3, 'active'));
  await world.waitForReport(isOutcome(activation.id, 'activated'), 10_000);
  await agent.idle();
  const reports = world.harness.ingest.reports.filter((report) => report.deviceId === 'act-install');
  const benchmarked = reports.findIndex(isBenchmarkFor(world.v3.id, 'act-install'));
  assert.ok(benchmarked >= 0, 'the candidate was benchmarked');
  assert.ok(benchmarked < reports.findIndex(isOutcome(activation.id, 'activated')), 'before it was activated');
});

test('the activation of a candidate whose benchmark stepped aside for a fleet command that came first still runs that benchmark before activating', async (t) => {
  const rollbackFor = (deviceId: string) => publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  const { agent, sent } = await whenCandidateInstalls(t, 'act-after-cmd', async () => {
    const command = await rollbackFor('act-after-cmd');
    return { command, activation: await world.assign('act-after-cmd', world.v3, 'active') };
  });
  await world.waitForReport(isOutcome(sent.activation.id, 'activated'), 10_000);
  await agent.idle();
  const reports = world.harness.ingest.reports.filter((report) => report.deviceId === 'act-after-cmd');
  const benchmarked = reports.findIndex(isBenchmarkFor(world.v3.id, 'act-after-cmd'));
  assert.ok(benchmarked >= 0, `the candidate was benchmarked: ${reports.map((report) => report.kind).join(', ')}`);
  assert.ok(benchmarked < reports.findIndex(isOutcome(sent.activation.id, 'activated')), 'before it was activated');
});


test('an activation whose candidate is still being benchmarked for it is superseded by a newer assignment that arrives meanwhile: the candidate is never served', async (t) => {
  const deviceId = 'act-superseded';
  let onBenchmark: (() => void) | undefined;
  const logged: { level: number; msg: string; assignmentId?: string }[] = [];
  const logger = pino({ level: 'info' }, {
    write: (line: string) => {
      const { msg, level, assignmentId } = JSON.parse(line);
      logged.push({ level, msg, assignmentId });
      if (msg === 'model verified and installed') onInstalled?.();
      if (msg === 'benchmark started') onBenchmark?.();
    },
  });
  let onInstalled: (() => void) | undefined;
  // Long enough for the newer assignment to arrive during it: about 4 s (1,000 samples of two 2 ms runs).
  slowInference(t, 2);
  const { agent } = await startAgent(t, world, deviceId, { logger, benchmark: { latencySamples: 1_000, throughputBatches: 5, batchSize: 64 } });
  const v1 = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(v1.id, 'activated'), 30_000);
  let activation: Promise<{ id: string }> | undefined;
  let revert: Promise<{ id: string }> | undefined;
  onInstalled = () => {
    onInstalled = undefined;
    // The install's benchmark steps aside for the activation, which then runs it first.
    activation = world.assign(deviceId, world.v3, 'active');
    onBenchmark = () => {
      onBenchmark = undefined;
      revert = world.assign(deviceId, world.v2, 'active');
    };
  };
  await world.assign(deviceId, world.v3, 'candidate');
  await waitFor(() => revert !== undefined, 30_000, 'the revert sent during the activation\'s benchmark');
  const [activated, reverted] = [await activation!, await revert!];
  await world.waitForReport(isOutcome(reverted.id, 'activated'), 60_000);
  // (The candidate's benchmark runs again after the revert: not waited for.)
  const answer = world.harness.ingest.reports.find(isAnswerTo(activated.id));
  assert.equal(answer?.kind === 'assignment' && answer.outcome, 'refused');
  assert.equal(reasonOf(answer!), `superseded by assignment ${reverted.id}`);
  // Overtaken, not failed: logged at info (a reconnect's redelivery supersedes queued assignments every time).
  assert.deepEqual(logged.filter((line) => line.assignmentId === activated.id && /superseded|refused/.test(line.msg)), [{ level: 30, msg: 'assignment superseded', assignmentId: activated.id }]);
  assert.equal(agent.slots.active?.version, '2');
  assert.notEqual(agent.slots.previous?.version, '3', 'v3 was never the active model');
});

for (const command of ['rollback', 'drop-candidate'] as const) {
  test(`a failed ${command} given up for a newer assignment is not carried out at the next start either`, async (t) => {
    const deviceId = `stale-${command}`;
    const { logger, lines } = recordingLogger();
    const running = await startAgent(t, world, deviceId, { logger, assignmentRetryMs: 150 });
    const v1 = await world.assign(deviceId, world.v1, 'active');
    await world.waitForReport(isOutcome(v1.id, 'activated'));
    // rollback: v2 active over v1. drop-candidate: v3 the candidate next to v1.
    const setup = command === 'rollback' ? await world.assign(deviceId, world.v2, 'active') : await world.assign(deviceId, world.v3, 'candidate');
    await world.waitForReport(command === 'rollback' ? isOutcome(setup.id, 'activated') : isBenchmarkFor(world.v3.id, deviceId));
    await running.agent.idle();

    // A full disk for the write that answers the command only.
    let failFor: string | undefined;
    const save = SlotStateFile.prototype.save;
    SlotStateFile.prototype.save = async function (this: SlotStateFile, next) {
      if (failFor && next.handledIds.includes(failFor)) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return save.call(this, next);
    };
    t.after(() => (SlotStateFile.prototype.save = save));
    const sent = await publishFleetCommand(world.harness.broker, command, { deviceIds: [deviceId] }, { privateKey: world.privateKey });
    failFor = sent.id;
    await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && line.task === `command ${sent.id}`), 10_000, 'the command failed');
    // The operator's newer choice: v3 active (rollback), v2 the candidate (drop).
    const newer = command === 'rollback' ? await world.assign(deviceId, world.v3, 'active') : await world.assign(deviceId, world.v2, 'candidate');
    await world.waitForReport(isOutcome(newer.id, command === 'rollback' ? 'activated' : 'installed'), 20_000);
    failFor = undefined;
    await running.agent.idle();
    await running.stop();

    const { logger: again, lines: restarted } = recordingLogger();
    const second = await startAgent(t, world, deviceId, { logger: again, dataDir: running.dataDir });
    await second.agent.idle(); // what start() resumed, it queued before returning
    assert.equal(restarted.some((line) => line.msg === 'resuming a fleet command received before the restart'), false, 'the given-up command is not resumed');
    assert.equal(world.harness.ingest.reports.some((report) => report.kind === 'assignment' && report.assignmentId === sent.id), false, 'never answered: the server retries it if it still wants it');
    if (command === 'rollback') assert.equal(second.agent.slots.active?.version, '3', 'the newer activation stays');
    else assert.equal(second.agent.slots.candidate?.version, '2', 'the newer candidate stays');
  });
}
