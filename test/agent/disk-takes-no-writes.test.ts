import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import type { SlotState } from '../../agent/slot-state.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import type { Assignment, FleetCommand, Report } from '../../shared/protocol/payloads.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { engineMissing } from '../helpers/engines.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { mountTmpfs, remount } from '../helpers/tmpfs.ts';
import { createAgentWorld, isAnswerTo, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess, predictVia } from './agent-process.ts';
import { recordingLogger, startAgent, type RunningAgent } from './agent-harness.ts';

/**
 * A data disk that takes no writes (full, or remounted read-only: a worn SD card) must not keep the
 * agent from serving its last good model: leftovers of a crash it cannot remove are logged and left,
 * a fallback to the previous model, a rollback, a revert and a drop run from memory, and are recorded (and answered)
 * once the disk takes writes again. A restart before then comes back on state.json as it is.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const ROW = [[1, 2, 3, 4, 5, 6, 7]];
/** fleetprune_agent_assignments_total by outcome (those above 0). */
async function answersCounted(agent: RunningAgent['agent']): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const value of (await agent.metrics.assignments.get()).values) if (value.value > 0) counts[String(value.labels.outcome)] = value.value;
  return counts;
}
const readState = async (dataDir: string) => JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')) as SlotState;

interface SmallDisk {
  mount: string;
  dataDir: string;
  config: AgentConfig;
  configPath: string;
  /** The activations that seeded it, oldest first. */
  assignments: Assignment[];
  /** Writes state.json as a stop would have left it with `assignment` pending (and `commands` received, not carried out). */
  leavePending(assignment: Assignment, commands?: FleetCommand[]): Promise<void>;
  readOnly(): Promise<void>;
  fill(): Promise<void>;
  writable(): Promise<void>;
}

/**
 * A 2 MiB tmpfs holding a data dir with v1 active (and v2 after it with `twoVersions`, v1 then
 * previous); null when this machine cannot mount one (not root).
 */
async function smallDisk(t: TestContext, deviceId: string, twoVersions: boolean, candidate?: Parameters<AgentWorld['assign']>[1]): Promise<SmallDisk | null> {
  const mount = await mountTmpfs(t, `no-writes-${deviceId}`, '2m');
  if (!mount) return null;
  const dataDir = join(mount, 'data');
  const config = await world.config(deviceId);
  const seeding = await startAgent(t, world, deviceId, { dataDir, config, holdout: undefined });
  const assignments: Assignment[] = [];
  for (const model of twoVersions ? [world.v1, world.v2] : [world.v1]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
    assignments.push(assigned);
  }
  if (candidate) {
    const installed = await world.assign(deviceId, candidate, 'candidate');
    await world.waitForReport(isOutcome(installed.id, 'installed'));
  }
  await seeding.agent.idle();
  await seeding.stop();
  const configDir = await mkdtemp(join(tmpdir(), 'fleetprune-no-writes-config-'));
  deferCleanup(t, () => rm(configDir, { recursive: true, force: true }));
  const filler = join(mount, 'filler');
  return {
    mount,
    dataDir,
    config,
    assignments,
    configPath: await AgentProcess.writeConfig(configDir, config),
    async leavePending(assignment, commands) {
      const saved = await readState(dataDir);
      await writeFile(join(dataDir, 'state.json'), JSON.stringify({ ...saved, pending: assignment, assignmentSeq: assignment.seq, ...(commands ? { pendingCommands: commands } : {}) }));
    },
    async readOnly() {
      assert.equal(await remount(mount, 'ro'), true, 'remounted read-only');
    },
    async fill() {
      await writeFile(filler, Buffer.alloc(4 * 1024 * 1024)).catch(() => {});
    },
    async writable() {
      assert.equal(await remount(mount, 'rw'), true, 'remounted read-write');
      await rm(filler, { force: true });
    },
  };
}

const noTmpfs = (t: TestContext) => engineMissing(t, 'a tmpfs mount', 'mounting one needs root (the test makes a full or read-only data disk)');

/** Starts the CLI agent on the disk; resolves when it is ready, or with how it exited. */
async function startOn(t: TestContext, disk: SmallDisk) {
  const agent = AgentProcess.spawn(['--config', disk.configPath, '--data-dir', disk.dataDir]);
  deferCleanup(t, () => agent.stop());
  const outcome = await Promise.race([agent.ready().then((ready) => ({ ready })), agent.exited.then((exited) => ({ exited }))]);
  if (!('ready' in outcome)) assert.fail(`the agent exited (${JSON.stringify(outcome.exited)}) instead of serving: ${agent.stderr.slice(-600)}`);
  return { agent, ...outcome.ready };
}

/** Leftovers of a kill -9 that the start removes, and the log line that names one it cannot. */
const leftovers: { what: string; make: (dataDir: string) => Promise<string>; msg: string }[] = [
  {
    what: 'a state.json temp file',
    make: async (dataDir) => {
      const path = join(dataDir, '.state.json.tmp-0123456789ab');
      await writeFile(path, '{"partial');
      return path;
    },
    msg: 'cannot remove a leftover file; left in place',
  },
  {
    what: 'a models/.staging-* directory',
    make: async (dataDir) => {
      const path = join(dataDir, 'models', `.staging-${'e'.repeat(64)}`);
      await mkdir(path);
      await writeFile(join(path, 'manifest.json'), '{}');
      return path;
    },
    msg: 'cannot remove a leftover file; left in place',
  },
  {
    what: 'a week-old downloads/*.part',
    make: async (dataDir) => {
      const path = join(dataDir, 'downloads', `${'d'.repeat(64)}.part`);
      await writeFile(path, Buffer.alloc(1000));
      const weekAgo = new Date(Date.now() - 8 * 86_400_000);
      await utimes(path, weekAgo, weekAgo);
      return path;
    },
    msg: 'cannot remove a leftover file; left in place',
  },
  {
    what: 'an outbox temp file',
    make: async (dataDir) => {
      const path = join(dataDir, 'outbox', '.000000000000009-x.json.tmp-0123456789ab');
      await writeFile(path, '{');
      return path;
    },
    msg: 'cannot remove a leftover temp file of the outbox; left in place',
  },
];

for (const { what, make, msg } of leftovers) {
  test(`an agent restarted on a read-only data disk with ${what} left by a crash serves its active model, and logs the leftover it cannot remove`, async (t) => {
    const disk = await smallDisk(t, `ro-left-${leftovers.findIndex((leftover) => leftover.what === what)}`, false);
    if (!disk) return noTmpfs(t);
    const leftover = await make(disk.dataDir);
    await disk.readOnly();
    const { agent, port, active } = await startOn(t, disk);
    assert.equal(active, '1');
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id, 'v1 served');
    await agent.waitForLog(msg);
    const line = agent.stderr.split('\n').find((text) => text.includes(`"msg":"${msg}"`))!;
    assert.equal(JSON.parse(line).file, leftover, `the line names the leftover: ${line}`);
    assert.match(JSON.parse(line).err, /EROFS/, `the line names the error: ${line}`);
  });
}

test('a corrupt state.json on a read-only data disk: the agent starts with empty slots, and once the disk takes writes sets the file aside and restores the active model', async (t) => {
  const disk = await smallDisk(t, 'ro-corrupt', false);
  if (!disk) return noTmpfs(t);
  await writeFile(join(disk.dataDir, 'state.json'), '{"schema": 1, "act');
  await disk.readOnly();
  const { logger, lines } = recordingLogger();
  // In process, to take the retained assignment again quickly (its retry timer) once the disk takes writes.
  const { agent, predict } = await startAgent(t, world, 'ro-corrupt', { dataDir: disk.dataDir, config: disk.config, holdout: undefined, logger, assignmentRetryMs: 200 });
  assert.equal(agent.slots.active, null, 'empty slots, as on a writable disk');
  assert.equal((await predict({ rows: ROW })).status, 503);
  const unmoved = lines.find((line) => line.msg === 'the corrupt state file cannot be set aside now; it is set aside before the first state write');
  assert.equal(unmoved?.file, join(disk.dataDir, 'state.json'), 'the state file that could not be set aside is named');
  assert.equal(lines.some((line) => line.msg === "the agent state file is corrupt; starting with empty slots until the server's assignment restores them"), true, 'the corruption is logged');

  await disk.writable();
  await waitFor(() => agent.slots.active?.sha256 === world.v1.id, 15_000, 'v1 restored by the retained assignment');
  // The slot is recorded before the model's session is loaded and swapped in: served a moment later.
  await waitFor(async () => (await predict({ rows: ROW })).json.sha256 === world.v1.id, 5_000, 'v1 served');
  const aside = (await readdir(disk.dataDir)).filter((name) => name.startsWith('state.json.corrupt-'));
  assert.equal(aside.length, 1, `the corrupt file kept for inspection: ${aside}`);
  assert.equal(await readFile(join(disk.dataDir, aside[0]!), 'utf8'), '{"schema": 1, "act', 'kept as it was');
  assert.equal((await readState(disk.dataDir)).active?.sha256, world.v1.id, 'a new state file');
});

for (const kind of ['read-only', 'full'] as const) {
  test(`an agent restarted on a ${kind} data disk whose active model is damaged serves the previous one`, async (t) => {
    const disk = await smallDisk(t, `damaged-${kind}`, true);
    if (!disk) return noTmpfs(t);
    const onnx = join(disk.dataDir, 'models', world.v2.id, 'model.onnx');
    const bytes = await readFile(onnx);
    bytes[bytes.length - 5]! ^= 0xff;
    await writeFile(onnx, bytes);
    if (kind === 'read-only') await disk.readOnly();
    else await disk.fill();
    const { agent, port, active } = await startOn(t, disk);
    assert.equal(active, '1');
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id, 'v1 served');
    await agent.waitForLog('the state change cannot be recorded on disk; running on it from memory until the disk takes writes (its reports are sent then)');
  });
}

test('the fallback to the previous model run from memory is recorded, and the loss reported, once the disk takes writes', async (t) => {
  const deviceId = 'damaged-later';
  const disk = await smallDisk(t, deviceId, true);
  if (!disk) return noTmpfs(t);
  const isLoss = (report: Report) => isOutcome(disk.assignments[1]!.id, 'refused')(report) && report.deviceId === deviceId;
  const onnx = join(disk.dataDir, 'models', world.v2.id, 'model.onnx');
  const bytes = await readFile(onnx);
  bytes[bytes.length - 5]! ^= 0xff;
  await writeFile(onnx, bytes);
  await disk.readOnly();
  const { agent, predict } = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, heartbeatIntervalMs: 200 });
  assert.equal((await predict({ rows: ROW })).json.sha256, world.v1.id, 'v1 served from memory');
  assert.deepEqual(agent.slots, { active: { model: world.v1.manifest.name, version: '1', sha256: world.v1.id }, candidate: null, previous: null });
  await delay(1500); // a few heartbeats
  assert.equal((await readState(disk.dataDir)).active?.sha256, world.v2.id, 'state.json unchanged: a restart comes back on it');
  assert.equal(world.harness.ingest.reports.some(isLoss), false, 'the loss is not reported before it is recorded');

  await disk.writable();
  const loss = await world.waitForReport(isLoss, 10_000);
  assert.match(loss.kind === 'assignment' ? String(loss.reason) : '', /^dropped from the active slot, its files on the device unusable: /);
  await waitFor(async () => (await readState(disk.dataDir)).active?.sha256 === world.v1.id, 10_000, 'the fallback recorded');
  const state = await readState(disk.dataDir);
  assert.equal(state.previous, null);
  assert.deepEqual(state.lost?.map((model) => model.sha256), [world.v2.id], 'the lost model kept, for its restore');
});

/** The two ways back to the previous model: a fleet rollback command, and a rollout's revert (an assignment of the previous version as active). */
const ROLLBACKS = {
  'a rollback': { id: 'rollback', send: (deviceId: string) => publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey }), field: 'commandId' },
  'a revert (an assignment of the previous model)': { id: 'revert', send: (deviceId: string) => world.assign(deviceId, world.v1, 'active', { revert: true }), field: 'assignmentId' },
} as const;

for (const [what, { id, send, field }] of Object.entries(ROLLBACKS)) {
  for (const kind of ['full', 'read-only'] as const) {
    test(`${what} on a ${kind} data disk switches the served model at once, and is recorded and answered once the disk takes writes`, async (t) => {
      const deviceId = `${id}-${kind}`;
      const disk = await smallDisk(t, deviceId, true);
      if (!disk) return noTmpfs(t);
      const { logger, lines } = recordingLogger();
      const { agent, predict } = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, logger, heartbeatIntervalMs: 200, assignmentRetryMs: 200 });
      assert.equal((await predict({ rows: ROW })).json.sha256, world.v2.id);
      if (kind === 'full') await disk.fill();
      else await disk.readOnly();

      const sent = await send(deviceId);
      await waitFor(async () => (await predict({ rows: ROW })).json.sha256 === world.v1.id, 5000, 'v1 served');
      assert.deepEqual([agent.slots.active?.sha256, agent.slots.previous?.sha256], [world.v1.id, world.v2.id]);
      const said = (line: Record<string, unknown>) => line[field] === sent.id && line.msg === 'rolled back to the previous model in memory: the disk takes no writes; the rollback is recorded and answered once it does (a restart before then comes back on the state on disk)';
      assert.equal(lines.some(said), true, 'the log says what happened');
      await delay(1500); // a few heartbeats, and retry timers
      assert.equal((await predict({ rows: ROW })).json.sha256, world.v1.id, 'still v1');
      assert.equal((await readState(disk.dataDir)).active?.sha256, world.v2.id, 'state.json unchanged');
      assert.equal(world.harness.ingest.reports.some(isAnswerTo(sent.id)), false, 'not answered before it is recorded');
      assert.equal((await answersCounted(agent))['rolled-back'], undefined, 'nor counted');

      await disk.writable();
      const answer = await world.waitForReport(isAnswerTo(sent.id), 10_000);
      assert.equal(answer.kind === 'assignment' && answer.outcome, 'rolled-back');
      const state = await readState(disk.dataDir);
      assert.deepEqual([state.active?.sha256, state.previous?.sha256], [world.v1.id, world.v2.id], 'recorded: v1 active, v2 previous');
      assert.equal(state.handledIds.includes(sent.id), true);
      assert.deepEqual([state.pendingCommands ?? [], state.pending], [[], null], 'nothing left pending');
      await agent.idle();
      assert.equal(world.harness.ingest.reports.filter(isAnswerTo(sent.id)).length, 1, 'answered once');
      assert.equal((await answersCounted(agent))['rolled-back'], 1, 'counted once');
    });
  }
}

test('a drop-candidate on a read-only data disk empties the candidate slot at once, and is recorded and answered once the disk takes writes', async (t) => {
  const deviceId = 'drop-read-only';
  const disk = await smallDisk(t, deviceId, false);
  if (!disk) return noTmpfs(t);
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, logger, heartbeatIntervalMs: 200, assignmentRetryMs: 200 });
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await agent.idle();
  await disk.readOnly();

  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await waitFor(async () => agent.slots.candidate === null, 5000, 'the candidate slot emptied');
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  assert.equal(lines.some((line) => line.commandId === drop.id && line.msg.startsWith('dropped the candidate in memory: the disk takes no writes')), true, 'the log says what happened');
  await delay(1500); // a few heartbeats
  assert.equal((await readState(disk.dataDir)).candidate?.sha256, world.v2.id, 'state.json unchanged');
  assert.equal(world.harness.ingest.reports.some(isAnswerTo(drop.id)), false, 'not answered before it is recorded');

  await disk.writable();
  const answer = await world.waitForReport(isAnswerTo(drop.id), 10_000);
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'candidate-dropped');
  const state = await readState(disk.dataDir);
  assert.equal(state.candidate, null, 'recorded');
  assert.equal(state.handledIds.includes(drop.id), true);
  await agent.idle();
  assert.equal(world.harness.ingest.reports.filter(isAnswerTo(drop.id)).length, 1, 'answered once');
  await waitFor(async () => !(await readdir(join(disk.dataDir, 'models'))).includes(world.v2.id), 5000, 'the dropped candidate\'s files removed once the drop is recorded');
});

test('on a state kept in memory, a drop that first refuses a pending candidate assignment is still carried out from memory at once', async (t) => {
  const deviceId = 'drop-after-refusal';
  const disk = await smallDisk(t, deviceId, true, world.v3);
  if (!disk) return noTmpfs(t);
  // state.json as a stop left it: a candidate assignment pending, and a rollback received, not carried out yet.
  const pending = await world.assign(deviceId, world.v1, 'candidate');
  await disk.leavePending(pending, [await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey })]);
  await disk.readOnly();

  const { agent } = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, heartbeatIntervalMs: 200, assignmentRetryMs: 200 });
  await waitFor(async () => agent.slots.active?.sha256 === world.v1.id, 5000, 'rolled back from memory');
  await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await waitFor(async () => agent.slots.candidate === null, 5000, 'the candidate dropped from memory, the disk still read-only');
});

test('once a drop from memory is recorded, the activation of its candidate it made moot is refused at once (not at its next backoff), and the dropped files go', async (t) => {
  const deviceId = 'drop-pending-activation';
  const disk = await smallDisk(t, deviceId, false, world.v2);
  if (!disk) return noTmpfs(t);
  // The candidate's activation pending in state.json: on a read-only disk it fails, and waits a minute for its retry.
  const activation = await world.assign(deviceId, world.v2, 'active');
  await disk.leavePending(activation);
  await disk.readOnly();
  const { logger, lines } = recordingLogger();
  const { agent } = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, logger, heartbeatIntervalMs: 200, assignmentRetryMs: 60_000 });
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).includes(activation.id)), 5000, 'the activation failed on the disk');
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await waitFor(async () => agent.slots.candidate === null, 5000, 'the candidate dropped from memory');

  await disk.writable();
  await world.waitForReport(isOutcome(drop.id, 'candidate-dropped'), 10_000);
  const refused = await world.waitForReport(isOutcome(activation.id, 'refused'), 10_000);
  assert.match(refused.kind === 'assignment' ? String(refused.reason) : '', /^not activated: a drop-candidate issued after it/);
  await agent.idle();
  assert.equal((await readdir(join(disk.dataDir, 'models'))).includes(world.v2.id), false, 'the dropped candidate\'s files removed');
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});

test('an activation made moot by a drop carried out from memory is not refused before the drop is recorded: a restart before then carries it out, answered once', async (t) => {
  const deviceId = 'moot-in-memory';
  const disk = await smallDisk(t, deviceId, false);
  if (!disk) return noTmpfs(t);
  const { logger, lines } = recordingLogger();
  const first = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, logger, heartbeatIntervalMs: 200, assignmentRetryMs: 200 });
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  await world.waitForReport(isOutcome(candidate.id, 'installed'));
  await first.agent.idle();
  await disk.readOnly();

  // The activation cannot be saved as pending: taken again on its timer. A drop issued after it is carried out from memory.
  const activation = await world.assign(deviceId, world.v2, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed' && String(line.task).includes(activation.id)), 5000, 'the activation failed on the disk');
  const drop = await publishFleetCommand(world.harness.broker, 'drop-candidate', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await waitFor(() => first.agent.slots.candidate === null, 5000, 'dropped in memory');
  await delay(1500); // retry timers: the activation is moot in memory
  assert.deepEqual(world.harness.ingest.reports.filter((report) => isAnswerTo(activation.id)(report) || isAnswerTo(drop.id)(report)), [], 'neither answered while the drop is not recorded');

  // A restart before the disk takes writes: state.json still holds the candidate, and the retained activation is carried out.
  await first.stop();
  const second = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config: disk.config, holdout: undefined, heartbeatIntervalMs: 200, assignmentRetryMs: 200 });
  await disk.writable();
  await world.waitForReport(isOutcome(activation.id, 'activated'), 10_000);
  await second.agent.idle();
  const answers = world.harness.ingest.reports.filter(isAnswerTo(activation.id)).map((report) => (report.kind === 'assignment' ? report.outcome : report.kind));
  assert.deepEqual(answers, ['activated'], 'one answer, which agrees with what the device runs');
  assert.equal(second.agent.slots.active?.sha256, world.v2.id);
});

for (const [what, { id, send, field }] of Object.entries(ROLLBACKS)) {
  // A fleet command is not retained: a restart forgets one it did not record. A revert is the device's retained assignment: the broker delivers it again.
  const retained = id === 'revert';
  test(`an agent restarted before the disk took ${what} comes back on the state on disk${retained ? ', and carries out the retained revert again' : ''}`, async (t) => {
    const deviceId = `${id}-restart`;
    const disk = await smallDisk(t, deviceId, true);
    if (!disk) return noTmpfs(t);
    const { config } = disk;
    const first = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config, holdout: undefined });
    await disk.readOnly();
    const sent = await send(deviceId);
    await waitFor(async () => (await first.predict({ rows: ROW })).json.sha256 === world.v1.id, 5000, 'v1 served from memory');
    await first.stop();
    assert.equal((await readState(disk.dataDir)).active?.sha256, world.v2.id, 'state.json names v2');
    const { logger, lines } = recordingLogger();
    const second = await startAgent(t, world, deviceId, { dataDir: disk.dataDir, config, holdout: undefined, logger, heartbeatIntervalMs: 200 });
    if (!retained) {
      assert.equal((await second.predict({ rows: ROW })).json.sha256, world.v2.id, 'v2, as state.json says');
      return;
    }
    await waitFor(async () => (await second.predict({ rows: ROW })).json.sha256 === world.v1.id, 5000, 'v1 served again: the broker delivered the retained revert');
    assert.equal(lines.some((line) => line[field] === sent.id && line.msg.startsWith('rolled back to the previous model in memory')), true, 'carried out from memory again');
    await disk.writable();
    const answer = await world.waitForReport(isAnswerTo(sent.id), 10_000);
    assert.equal(answer.kind === 'assignment' && answer.outcome, 'rolled-back', 'answered once the disk takes writes');
  });
}
