import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { access, lstat, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Report } from '../../shared/protocol/payloads.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';
import { blockStateFile, restoreStateFile } from './blocked-state-file.ts';
import type { IClientPublishOptions } from 'mqtt';
import { connectMqtt, type MqttConnector } from '../../agent/mqtt-link.ts';

/**
 * A full disk on the device: not a network failure (no retries), the partial download gone before
 * the refusal is written, the refusal reaching the server even when the disk cannot take it, and
 * task failures logged as one line.
 */

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

const reasonOf = (report: Report) => (report.kind === 'assignment' ? (report.reason ?? '') : '');
const blobRequestsFor = (sha256: string) => world.http.blobRequests().filter((request) => request.path.endsWith(sha256)).length;

/** Makes the state file unwritable (a non-empty directory where it goes) and the outbox too (a file where it goes), as a full disk does; returns the undo. */
async function blockWrites(dataDir: string): Promise<() => Promise<void>> {
  const stateFile = join(dataDir, 'state.json');
  const outbox = join(dataDir, 'outbox');
  const saved = (await blockStateFile(stateFile))!;
  await rm(outbox, { recursive: true });
  await writeFile(outbox, 'in the way');
  return async () => {
    await restoreStateFile(stateFile, saved);
    await rm(outbox);
    await mkdir(outbox);
  };
}

test('a disk that fills up during a download is refused at once, not retried as a network failure, and the partial file is removed first', async (t) => {
  if (!(await access('/dev/full', constants.W_OK).then(() => true, () => false))) return t.skip('no writable /dev/full (it fails every write with ENOSPC)');
  const { logger, lines } = recordingLogger();
  const { dataDir } = await startAgent(t, world, 'full-1', { logger });
  const blob = world.v2.manifest.files['model.onnx']!.sha256;
  // The partial download is a link to /dev/full: every write into it fails with ENOSPC, as on a full disk.
  const part = join(dataDir, 'downloads', `${blob}.part`);
  await symlink('/dev/full', part);
  const assignment = await world.assign('full-1', world.v2, 'candidate');
  const refused = await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  assert.equal(reasonOf(refused), `${part}: ENOSPC: no space left on device, write`);
  assert.equal(blobRequestsFor(blob), 1, 'one attempt: no retries');
  assert.equal(await lstat(part).catch(() => null), null, 'the partial download is gone');
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), []);
  assert.equal(lines.filter((line) => line.msg === 'model download failed; retrying').length, 0);
  assert.equal(lines.filter((line) => line.msg === 'agent task failed').length, 0);
});

test('a download the disk has no room for is refused before it starts, in one line saying what it needs', async (t) => {
  const free = 400 * 1024;
  const asked: string[] = [];
  const { dataDir } = await startAgent(t, world, 'full-2', {
    freeSpace: async (dir) => {
      asked.push(dir);
      return free;
    },
  });
  const blob = world.big.manifest.files['model.onnx']!;
  const assignment = await world.assign('full-2', world.big, 'candidate');
  const refused = await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  const needed = /^no space for model\.onnx: needs (\d+) bytes, 409600 free$/.exec(reasonOf(refused));
  assert.ok(needed, reasonOf(refused));
  // The model, its manifest and a reserve for the state file and reports.
  assert.ok(Number(needed[1]) > blob.bytes && Number(needed[1]) < blob.bytes + 128 * 1024, needed[1]);
  assert.deepEqual(asked, [join(dataDir, 'downloads')]);
  assert.equal(blobRequestsFor(blob.sha256), 0, 'nothing downloaded');
  assert.deepEqual(await readdir(join(dataDir, 'downloads')), []);
});

test('the refusal reaches the server when the disk cannot take it (neither the state file nor the outbox), and is recorded once it can', async (t) => {
  const { logger, lines } = recordingLogger();
  let unblock: (() => Promise<void>) | undefined;
  const { dataDir } = await startAgent(t, world, 'full-3', {
    logger,
    assignmentResyncMs: 300,
    // The disk fills up (another process) while the assignment is handled: no room for the model,
    // and none for the state file or the outbox either.
    freeSpace: async () => {
      unblock ??= await blockWrites(dataDir);
      return 0;
    },
  });
  const assignment = await world.assign('full-3', world.v3, 'candidate');
  const refused = await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  assert.match(reasonOf(refused), /^no space for model\.onnx: needs \d+ bytes, 0 free$/);
  assert.ok(lines.some((line) => line.msg === 'the refusal cannot be recorded on disk; sending it from memory'));
  assert.equal(lines.filter((line) => line.msg === 'agent task failed').length, 0);

  // Room again: the assignment (still pending on disk) is handled again at its next delivery, and
  // the same refusal is recorded; the server has it once.
  await unblock!();
  const recorded = async () => {
    const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
    return state.handledIds.includes(assignment.id) && state.pending === null && state.unsentReports.length === 0;
  };
  await waitFor(recorded, 10_000, 'the refusal recorded');
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(assignment.id)).map((report) => report.id), [refused.id]);
});

test('a task that fails (its state file unwritable) is logged as one line, without a stack trace', async (t) => {
  const { logger, lines } = recordingLogger();
  const { dataDir } = await startAgent(t, world, 'full-4', { logger });
  const stateFile = join(dataDir, 'state.json');
  await blockStateFile(stateFile);
  await world.assign('full-4', world.v1, 'active');
  await waitFor(() => lines.some((line) => line.msg === 'agent task failed'), 10_000, 'the task failure logged');
  const failure = lines.find((line) => line.msg === 'agent task failed')!;
  assert.equal(typeof failure.err, 'string');
  assert.match(failure.err, /^E[A-Z]+: .*state\.json/);
  assert.doesNotMatch(failure.err, /\n/);
});

/** A connector whose reports get no PUBACK while `down()` says so (the broker takes nothing else from it either way). */
function reportsBlockable(down: () => boolean): MqttConnector {
  return (url, options) => {
    const client = connectMqtt(url, options);
    const publishAsync = client.publishAsync.bind(client);
    client.publishAsync = ((topic: string, message: string | Buffer, opts?: IClientPublishOptions) =>
      down() && topic.endsWith('/reports') ? Promise.reject(new Error('no PUBACK')) : publishAsync(topic, message, opts)) as typeof client.publishAsync;
    return client;
  };
}

test('a refusal held in memory is recorded by the next state write that succeeds, so it reaches the server after a restart even when its assignment was replaced', async (t) => {
  const { logger, lines } = recordingLogger();
  const config = await world.config('full-5', { site: 'osaka' });
  let reportsDown = true;
  let room = 0;
  let unblock: (() => Promise<void>) | undefined;
  const first = await startAgent(t, world, 'full-5', {
    config,
    logger,
    holdout: undefined,
    connector: reportsBlockable(() => reportsDown),
    freeSpace: async () => {
      if (room === 0) unblock ??= await blockWrites(first.dataDir);
      return room;
    },
  });
  const { dataDir } = first;
  // No room for the model, nor for the refusal: it is held in memory, and the broker takes no report.
  const refusedOne = await world.assign('full-5', world.v3, 'candidate');
  await waitFor(() => lines.some((line) => line.msg === 'the refusal cannot be recorded on disk; sending it from memory'), 10_000, 'the refusal held');
  // Room again; the server replaces the assignment before the agent took the refused one again.
  await unblock!();
  room = 1e12;
  const next = await world.assign('full-5', world.v2, 'candidate');
  await waitFor(async () => JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8')).candidate?.sha256 === world.v2.id, 10_000, 'the next one installed');
  await first.stop();
  assert.deepEqual(world.harness.ingest.reports.filter((report) => report.deviceId === 'full-5'), [], 'nothing got out');

  // The next start, with the broker taking reports again: both assignments are answered.
  reportsDown = false;
  await startAgent(t, world, 'full-5', { config, dataDir, holdout: undefined });
  await world.waitForReport(isOutcome(next.id, 'installed'), 10_000);
  const answers = world.harness.ingest.reports.filter(isAnswerTo(refusedOne.id));
  assert.deepEqual(answers.map((report) => report.kind === 'assignment' && report.outcome), ['refused']);
  assert.match(reasonOf(answers[0]!), /^no space for model\.onnx/);
});

test('an assignment whose handling fails on the device (its state file unwritable) is taken again on a timer with a backoff, without waiting for the broker to deliver it again', async (t) => {
  const { logger, lines } = recordingLogger();
  // The broker delivers the assignment once here (no resubscription within the test).
  const { dataDir } = await startAgent(t, world, 'full-6', { logger, assignmentRetryMs: 150 });
  const stateFile = join(dataDir, 'state.json');
  await blockStateFile(stateFile);
  const assignment = await world.assign('full-6', world.v1, 'active');
  const failures = () => lines.filter((line) => line.msg === 'agent task failed');
  await waitFor(() => failures().length >= 3, 10_000, 'three failed attempts');
  assert.deepEqual(failures().slice(0, 3).map((line) => line.retryInMs), [150, 300, 600], 'the wait doubles');
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(assignment.id)), []);

  // Room again: the next attempt answers it.
  await rm(stateFile, { recursive: true });
  const activated = await world.waitForReport(isOutcome(assignment.id, 'activated'), 10_000);
  assert.equal(activated.kind === 'assignment' && activated.version, world.v1.version);
  const state = JSON.parse(await readFile(stateFile, 'utf8'));
  assert.ok(state.handledIds.includes(assignment.id));
  assert.equal(state.pending, null);
});

test('a refusal the disk could not take is recorded by the timed retry once it can, without a new delivery', async (t) => {
  let unblock: (() => Promise<void>) | undefined;
  const { dataDir } = await startAgent(t, world, 'full-7', {
    assignmentRetryMs: 150,
    freeSpace: async () => {
      unblock ??= await blockWrites(dataDir);
      return 0;
    },
  });
  const assignment = await world.assign('full-7', world.v3, 'candidate');
  const refused = await world.waitForReport(isOutcome(assignment.id, 'refused'), 10_000);
  await unblock!();
  await waitFor(async () => {
    const state = JSON.parse(await readFile(join(dataDir, 'state.json'), 'utf8'));
    return state.handledIds.includes(assignment.id) && state.pending === null && state.unsentReports.length === 0;
  }, 10_000, 'the refusal recorded');
  assert.deepEqual(world.harness.ingest.reports.filter(isAnswerTo(assignment.id)).map((report) => report.id), [refused.id]);
});
