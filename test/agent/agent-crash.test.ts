import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess, predictVia } from './agent-process.ts';
import { startAgent } from './agent-harness.ts';
import { configExposure } from '../../agent/cli-command.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { publishFleetCommand } from '../../server/fleet/fleet-publisher.ts';
import { signFleetCommand } from '../../shared/protocol/message-signature.ts';
import { encodePayload } from '../../shared/protocol/parse-message.ts';
import { FleetCommandSchema } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC } from '../../shared/protocol/topics.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const ROW = [[1, 2, 3, 4, 5, 6, 7]];

/** A device with its config file and data dir, started as real processes (possibly several times). */
async function device(t: TestContext, deviceId: string) {
  const dir = await mkdtemp(join(tmpdir(), `fleetprune-crash-${deviceId}-`));
  const processes: AgentProcess[] = [];
  // after hooks run in registration order: stop the processes, then delete their files.
  t.after(() => Promise.all(processes.map((p) => p.stop())));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = await world.config(deviceId);
  const configPath = await AgentProcess.writeConfig(dir, config);
  const dataDir = join(dir, 'data');
  return {
    dataDir,
    config,
    start(extra: string[] = [], env: Record<string, string> = {}) {
      const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', dataDir, '--holdout', world.holdoutPath, '--label', 'kind', '--bench-samples', '50', '--bench-batches', '5', ...extra], env);
      processes.push(agent);
      return agent;
    },
  };
}

/** Prepares the device's data dir with v1 active (by an in-process agent, which is faster to start). */
async function withActiveV1(t: TestContext, deviceId: string) {
  const dev = await device(t, deviceId);
  const seeding = await startAgent(t, world, deviceId, { dataDir: dev.dataDir, config: dev.config });
  const assignment = await world.assign(deviceId, world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await seeding.stop();
  return { dev };
}

test('kill -9 during a download: after restart the agent serves the last good model and resumes with Range', async (t) => {
  const { dev } = await withActiveV1(t, 'kill-download');
  const first = dev.start();
  await first.ready();
  world.http.throttle = { chunkBytes: 16 * 1024, delayMs: 40 };
  t.after(() => (world.http.throttle = undefined));
  const blobSha = world.big.manifest.files['model.onnx']!.sha256;
  const part = join(dev.dataDir, 'downloads', `${blobSha}.part`);
  const assignment = await world.assign('kill-download', world.big, 'active');
  const deadline = Date.now() + 15_000;
  while (((await stat(part).catch(() => undefined))?.size ?? 0) < 100_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await first.kill9();
  // The broker publishes the agent's last will: the device shows offline.
  await waitFor(() => world.harness.ingest.statuses.get('kill-download')?.online === false, 5000, 'the last will (offline status)');
  const partial = (await stat(part)).size;
  assert.ok(partial > 0 && partial < world.big.manifest.files['model.onnx']!.bytes, `partial download on disk (${partial} bytes)`);

  const blobRequestsBefore = world.http.blobRequests().length;
  const second = dev.start();
  const { port, active, activeRef } = await second.ready();
  assert.equal(active, '1');
  // The ready line names the model with its version.
  assert.equal(activeRef, `${world.v1.manifest.name}@1`);
  const served = await predictVia(port, ROW);
  assert.equal(served.status, 200);
  assert.equal(served.json.sha256, world.v1.id, 'serves v1 while the download resumes');
  await world.waitForReport(isOutcome(assignment.id, 'activated'), 30_000);
  await waitFor(() => world.harness.ingest.statuses.get('kill-download')?.online === true, 5000, 'online again');
  const resumed = world.http.blobRequests().slice(blobRequestsBefore).filter((r) => r.path.endsWith(blobSha));
  assert.ok(resumed.some((r) => r.status === 206 && r.range !== undefined && Number(/bytes=(\d+)-/.exec(r.range)![1]) >= partial), `resumed with Range: ${JSON.stringify(resumed)}`);
  assert.equal((await predictVia(port, ROW)).json.sha256, world.big.id);
});

test('kill -9 with a rollback read but still queued (behind a download it does not cancel): the next start carries it out, before the assignment issued after it', async (t) => {
  const deviceId = 'kill-queued-rollback';
  const dev = await device(t, deviceId);
  const seeding = await startAgent(t, world, deviceId, { dataDir: dev.dataDir, config: dev.config });
  for (const model of [world.v1, world.v2]) {
    const assigned = await world.assign(deviceId, model, 'active');
    await world.waitForReport(isOutcome(assigned.id, 'activated'));
  }
  await seeding.stop();
  // The server issues a rollback, then a candidate; the rollback reaches the device during the
  // candidate's download, which it does not cancel (issued after it): it is queued behind it.
  const unsigned = FleetCommandSchema.omit({ signature: true }).parse({ schema: 1, id: 'rollback-queued-0001', issuedAt: new Date(Date.now() - 1000).toISOString(), command: 'rollback', selector: { deviceIds: [deviceId] }, seq: Date.now() * 1000 });
  const rollback = signFleetCommand(unsigned, world.privateKey);
  const first = dev.start();
  await first.ready();
  world.http.throttle = { chunkBytes: 16 * 1024, delayMs: 200 };
  t.after(() => (world.http.throttle = undefined));
  const part = join(dev.dataDir, 'downloads', `${world.big.manifest.files['model.onnx']!.sha256}.part`);
  const candidate = await world.assign(deviceId, world.big, 'candidate');
  const deadline = Date.now() + 15_000;
  while (((await stat(part).catch(() => undefined))?.size ?? 0) < 20_000 && Date.now() < deadline) await delay(20);
  await world.harness.broker.publish(FLEET_COMMANDS_TOPIC, encodePayload(rollback), { qos: 1, retain: false });
  await first.waitForLog('fleet command received');
  await delay(500);
  await first.kill9();
  assert.equal(world.harness.ingest.reports.some(isOutcome(rollback.id, 'rolled-back')), false, 'not carried out before the kill');
  world.http.throttle = undefined;

  const second = dev.start();
  const { port } = await second.ready();
  await world.waitForReport(isOutcome(rollback.id, 'rolled-back'), 30_000);
  await world.waitForReport(isOutcome(candidate.id, 'installed'), 60_000);
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id, 'rolled back to v1');
  const answers = world.harness.ingest.reports.filter((report) => report.kind === 'assignment' && report.assignmentId === rollback.id);
  assert.equal(answers.length, 1, `answered once: ${JSON.stringify(answers)}`);
});

test('kill -9 during a benchmark: after restart the agent serves the active model and reruns the benchmark', async (t) => {
  const { dev } = await withActiveV1(t, 'kill-bench');
  const slow = dev.start(['--bench-samples', '1000000']);
  await slow.ready();
  const candidate = await world.assign('kill-bench', world.v2, 'candidate');
  await slow.waitForLog('benchmark started');
  await new Promise((r) => setTimeout(r, 300));
  await slow.kill9();
  assert.equal(world.harness.ingest.reports.some(isBenchmarkFor(world.v2.id, 'kill-bench')), false, 'no benchmark report before the kill');

  const second = dev.start();
  const { port, active } = await second.ready();
  assert.equal(active, '1');
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
  const report = await world.waitForReport(isBenchmarkFor(world.v2.id, 'kill-bench'), 30_000);
  assert.equal(report.kind === 'benchmark' && report.active?.sha256, world.v1.id);
  // The resumed benchmark still answers the assignment that installed the candidate.
  assert.equal(report.assignmentId, candidate.id);
});

/**
 * Assigns v2 as the device's candidate and has its agent die `times` times in the candidate's
 * part of the benchmark (killed right after the candidate's model loads), restarted after each
 * as systemd's Restart= does. Returns the candidate assignment.
 */
async function diesInBenchmark(dev: Awaited<ReturnType<typeof device>>, deviceId: string, times: number) {
  const dies = { FLEETPRUNE_AGENT_CRASH_AT: 'benchmark:after-load' };
  const first = dev.start([], dies);
  await first.ready();
  const candidate = await world.assign(deviceId, world.v2, 'candidate');
  assert.equal((await first.exited).signal, 'SIGKILL');
  for (let start = 2; start <= times; start++) assert.equal((await dev.start([], dies).exited).signal, 'SIGKILL', `start ${start}`);
  return candidate;
}

test('an agent that dies in every benchmark of a candidate (killed for memory) reports it benchmark-failed after three deaths, rather than dying at every restart', async (t) => {
  const { dev } = await withActiveV1(t, 'oom-bench');
  const candidate = await diesInBenchmark(dev, 'oom-bench', 3);
  assert.equal(world.harness.ingest.reports.some(isOutcome(candidate.id, 'benchmark-failed')), false, 'a death (a power cut?) is no verdict');
  // The fourth start does not run it again (it would die again): the candidate is reported failed, and the active model served.
  const third = dev.start([], { FLEETPRUNE_AGENT_CRASH_AT: 'benchmark:after-load' });
  const { port, active } = await third.ready();
  assert.equal(active, '1');
  const failed = await world.waitForReport(isOutcome(candidate.id, 'benchmark-failed'), 30_000);
  assert.match(failed.kind === 'assignment' ? (failed.reason ?? '') : '', /^the agent ended 3 times while benchmarking it \(killed for memory, a crash, or a power loss\): not benchmarked again$/);
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
  // Nor is it made the active model, should an activation come.
  const activation = await world.assign('oom-bench', world.v2, 'active');
  const refused = await world.waitForReport(isOutcome(activation.id, 'refused'), 30_000);
  assert.match(refused.kind === 'assignment' ? (refused.reason ?? '') : '', /^2 is not activated: the agent ended while benchmarking it, 3 times/);
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
  assert.equal(await Promise.race([third.exited.then(() => 'exited'), delay(500).then(() => 'running')]), 'running', 'it stays up');
  // Nor after a restart: the verdict is on disk with the candidate.
  await third.stop();
  const fourth = dev.start();
  const { port: fourthPort } = await fourth.ready();
  const again = await world.assign('oom-bench', world.v2, 'active');
  await world.waitForReport(isOutcome(again.id, 'refused'), 30_000);
  assert.equal((await predictVia(fourthPort, ROW)).json.sha256, world.v1.id);
});

test('two deaths in a candidate\'s benchmark and then one that runs to its end: the candidate is benchmarked and can be activated (the deaths are no verdict)', async (t) => {
  const { dev } = await withActiveV1(t, 'two-deaths');
  const candidate = await diesInBenchmark(dev, 'two-deaths', 2);
  const healthy = dev.start();
  await healthy.ready();
  const report = await world.waitForReport(isBenchmarkFor(world.v2.id, 'two-deaths'), 30_000);
  assert.equal(report.assignmentId, candidate.id);
  const activation = await world.assign('two-deaths', world.v2, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'), 30_000);
});

test('SIGTERM during a benchmark: the agent stops without waiting for it or reporting it, and reruns it after restart', async (t) => {
  const { dev } = await withActiveV1(t, 'term-bench');
  // About ten seconds of timing on an idle machine: far longer than a stop takes.
  const slow = dev.start(['--bench-samples', '1000000']);
  await slow.ready();
  const candidate = await world.assign('term-bench', world.v2, 'candidate');
  await slow.waitForLog('benchmark started');
  await slow.stop();
  assert.match(slow.stderr, /"msg":"benchmark stopped; it runs again at the next start"/);
  assert.doesNotMatch(slow.stderr, /"msg":"benchmark (finished|failed)"/, 'the interrupted benchmark neither finished nor failed');
  // The world is shared: other tests' devices benchmark v2 too.
  const benchmarkHere = isBenchmarkFor(world.v2.id, 'term-bench');
  assert.equal(world.harness.ingest.reports.some((r) => benchmarkHere(r) || isOutcome(candidate.id, 'benchmark-failed')(r)), false);

  const second = dev.start();
  await second.ready();
  const report = await world.waitForReport(benchmarkHere, 30_000);
  assert.equal(report.assignmentId, candidate.id);
  assert.equal(world.harness.ingest.reports.some(isOutcome(candidate.id, 'benchmark-failed')), false);
});

test('a rollback that arrives during a benchmark is carried out at once; the benchmark runs again after it, for the same candidate', async (t) => {
  const deviceId = 'rollback-mid-bench';
  const { dev } = await withActiveV1(t, deviceId);
  const seeding = await startAgent(t, world, deviceId, { dataDir: dev.dataDir, config: dev.config });
  const upgrade = await world.assign(deviceId, world.v2, 'active');
  await world.waitForReport(isOutcome(upgrade.id, 'activated'));
  await seeding.stop();
  // About ten seconds of timing on an idle machine: a rollback that waited for it would come after its report.
  const slow = dev.start(['--bench-samples', '1000000']);
  await slow.ready();
  const candidate = await world.assign(deviceId, world.v3, 'candidate');
  await slow.waitForLog('benchmark started');
  const command = await publishFleetCommand(world.harness.broker, 'rollback', { deviceIds: [deviceId] }, { privateKey: world.privateKey });
  await world.waitForReport(isOutcome(command.id, 'rolled-back'), 30_000);
  const benchmarkHere = isBenchmarkFor(world.v3.id, deviceId);
  assert.equal(world.harness.ingest.reports.some(benchmarkHere), false, 'the rollback did not wait for the benchmark');
  assert.equal(world.harness.ingest.reports.some(isOutcome(candidate.id, 'benchmark-failed')), false, 'an interrupted benchmark is no verdict');
  assert.match(slow.stderr, /"msg":"benchmark interrupted; it runs again after that work"/);
  // Run again after the rollback: the candidate stays, now side by side with the restored v1.
  await slow.waitFor(() => slow.stderr.split('"msg":"benchmark started"').length === 3, 20_000, 'the benchmark started again');
  const rerun = slow.stderr.split('\n').filter((line) => line.includes('"msg":"benchmark started"')).map((line) => JSON.parse(line));
  assert.deepEqual(rerun.map((line) => [line.candidate, line.active]), [['3', '2'], ['3', '1']]);
});

test('activating the candidate being benchmarked waits for the benchmark: its report is what a rollout counts', async (t) => {
  const deviceId = 'activate-mid-bench';
  const { dev } = await withActiveV1(t, deviceId);
  const slow = dev.start(['--bench-samples', '30000']);
  await slow.ready();
  await world.assign(deviceId, world.v2, 'candidate');
  await slow.waitForLog('benchmark started');
  const activation = await world.assign(deviceId, world.v2, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'), 60_000);
  const here = world.harness.ingest.reports.filter((r) => r.deviceId === deviceId);
  const benchmarked = here.findIndex(isBenchmarkFor(world.v2.id, deviceId));
  assert.ok(benchmarked >= 0 && benchmarked < here.findIndex(isOutcome(activation.id, 'activated')), `the benchmark was reported before the activation: ${here.map((r) => r.kind)}`);
  assert.doesNotMatch(slow.stderr, /benchmark interrupted/);
});

for (const point of ['activation:before-state', 'activation:after-state', 'install:before-rename'] as const) {
  test(`kill -9 during activation (${point}): after restart the agent serves a good model and finishes the activation`, async (t) => {
    const deviceId = `kill-${point.replace(/[:]/g, '-')}`;
    const { dev } = await withActiveV1(t, deviceId);
    const crashing = dev.start([], { FLEETPRUNE_AGENT_CRASH_AT: point });
    await crashing.ready();
    const assignment = await world.assign(deviceId, world.v3, 'active');
    const { signal } = await crashing.exited;
    assert.equal(signal, 'SIGKILL');
    const downloads = world.http.blobRequests().length;

    const second = dev.start();
    const { port, active } = await second.ready();
    // Before the state write the old model is still the active one; after it, the new one.
    assert.equal(active, point === 'activation:after-state' ? '3' : '1');
    const served = await predictVia(port, ROW);
    assert.equal(served.status, 200);
    assert.ok([world.v1.id, world.v3.id].includes(served.json.sha256));
    await world.waitForReport(isOutcome(assignment.id, 'activated'), 20_000);
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v3.id);
    assert.equal(world.harness.ingest.reports.filter(isOutcome(assignment.id, 'activated')).length, 1);
    // Once installed (renamed into models/), the model is kept for its pending assignment: not downloaded again.
    if (point !== 'install:before-rename') assert.equal(world.http.blobRequests().length, downloads, 'no second download');
  });
}

for (const command of ['drop-candidate', 'rollback'] as const) {
  test(`kill -9 right after taking a fleet command (${command}): the restarted agent carries it out and answers it once, without the server sending it again`, async (t) => {
    const deviceId = `kill-command-${command}`;
    const { dev } = await withActiveV1(t, deviceId);
    const seeding = await startAgent(t, world, deviceId, { dataDir: dev.dataDir, config: dev.config });
    // drop-candidate: v2 is the candidate next to v1. rollback: v2 is active, v1 the previous model.
    const setup = await world.assign(deviceId, world.v2, command === 'drop-candidate' ? 'candidate' : 'active');
    await world.waitForReport(isOutcome(setup.id, command === 'drop-candidate' ? 'installed' : 'activated'));
    await seeding.stop();

    const crashing = dev.start([], { FLEETPRUNE_AGENT_CRASH_AT: 'command:taken' });
    await crashing.ready();
    const sent = await publishFleetCommand(world.harness.broker, command, { deviceIds: [deviceId] }, { privateKey: world.privateKey });
    assert.equal((await crashing.exited).signal, 'SIGKILL');
    assert.equal(world.harness.ingest.reports.some((r) => r.kind === 'assignment' && r.assignmentId === sent.id), false, 'no answer before the kill');

    const second = dev.start();
    const { port } = await second.ready();
    await world.waitForReport(isOutcome(sent.id, command === 'drop-candidate' ? 'candidate-dropped' : 'rolled-back'), 20_000);
    assert.match(second.stderr, new RegExp(`"commandId":"${sent.id}","command":"${command}","msg":"resuming a fleet command received before the restart"`));
    assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
    await second.stop();
    // Answered: the next start leaves it alone.
    const third = dev.start();
    await third.ready();
    await delay(500);
    assert.equal(world.harness.ingest.reports.filter((r) => r.kind === 'assignment' && r.assignmentId === sent.id).length, 1);
    assert.doesNotMatch(third.stderr, /resuming a fleet command/);
  });
}

/** Every file under `dir` (relative path → sha256 of its content), to show a refused process changed nothing. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files[relative(dir, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return files;
}

test('one agent per data dir: a second one exits 2 naming the holder; after kill -9 (or a reboot that reused its id) the next one takes the lock over; a clean stop removes it', async (t) => {
  const { dev } = await withActiveV1(t, 'data-dir-lock');
  const lockFile = join(dev.dataDir, 'agent.lock');
  const first = dev.start();
  const { port } = await first.ready();
  const filesBefore = await snapshot(dev.dataDir);

  const second = dev.start();
  // An unref'd timer: a second agent that runs (as before the lock) fails the test rather than hanging it.
  const exit = await Promise.race([second.exited, delay(20_000, 'still running' as const, { ref: false })]);
  assert.deepEqual(exit, { code: 2, signal: null }, second.stderr);
  assert.equal(second.stderr, `fleetprune: --data-dir ${dev.dataDir} is in use by another fleetprune agent (process ${first.pid}); stop it or choose another --data-dir\n`);
  assert.equal(second.stdout, '');
  // The first one runs on, and the refused one touched nothing in the data dir.
  assert.equal((await predictVia(port, ROW)).json.sha256, world.v1.id);
  assert.deepEqual(await snapshot(dev.dataDir), filesBefore);
  const holder = async () => (await readFile(lockFile, 'utf8')).split('\n')[0];
  assert.equal(await holder(), String(first.pid));

  // kill -9 leaves the lock behind (as after a power cut); the next start takes it over.
  await first.kill9();
  assert.equal(await holder(), String(first.pid), 'the stale lock is left');
  const third = dev.start();
  const restarted = await third.ready();
  assert.equal(await holder(), String(third.pid));
  assert.equal((await predictVia(restarted.port, ROW)).json.sha256, world.v1.id);

  // After a power cut, the next boot may give the dead agent's process id to another process: a
  // lock naming a running process of another boot is stale too (else the device never starts its agent again).
  await third.kill9();
  await writeFile(lockFile, `${process.pid}\n00000000-0000-0000-0000-000000000000 1\n`);
  const fourth = dev.start();
  await fourth.ready();
  assert.equal(await holder(), String(fourth.pid));

  await fourth.stop();
  assert.deepEqual(await fourth.exited, { code: 0, signal: null }, fourth.stderr);
  assert.equal(existsSync(lockFile), false, 'a clean stop removes the lock');
  assert.deepEqual((await readdir(dev.dataDir)).filter((name) => name.includes('lock')), [], 'no lock, takeover or temporary file is left');
});

test('an agent config other users may read (it holds the broker password and token) is warned about at start; a 0600 one is not', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-config-mode-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const configPath = await AgentProcess.writeConfig(dir, await world.config('config-mode-1'));
  const run = async (mode: number) => {
    await chmod(configPath, mode);
    const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'data')]);
    try {
      await agent.ready();
    } finally {
      await agent.stop();
    }
    return agent.stderr;
  };
  assert.match(await run(0o644), new RegExp(`${configPath} can be read by other users \\(mode 0644\\), and it holds this device's broker password and token: chmod 600 it`));
  assert.doesNotMatch(await run(0o600), /can be read by other users/);
  // 0640 in the agent's own group (a container's mounted config, as deploy/compose/agents/README.md gives it) is the agent's.
  assert.doesNotMatch(await run(0o640), /can be read by/);
});

test("a config readable by a group other than the agent's own is warned about; the agent's own group, or no group bits, is not", () => {
  assert.deepEqual(configExposure(0o100640, 10001, [1000]), { who: "can be read by group 10001, which is not the agent's own group", mode: '0640', fix: "chown it to the agent's user and chmod 600 it, or give it the agent's own group (gid 1000)" });
  assert.equal(configExposure(0o100640, 10001, [10001]), null);
  assert.equal(configExposure(0o100600, 10001, [1000]), null);
  assert.deepEqual(configExposure(0o100604, 10001, [10001]), { who: 'can be read by other users', mode: '0604', fix: 'chmod 600 it' });
});
