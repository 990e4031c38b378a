import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import { grpcClient } from './helpers/grpc-client.ts';
import { runCli } from './helpers/run-cli.ts';
import { runCliBatch } from '../helpers/cli.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
export const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

interface SseEvent {
  event: string;
  data: any;
}

async function readEvents(response: Response): Promise<SseEvent[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => ({
      event: /^event: (.*)$/m.exec(block)![1]!,
      data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!),
    }));
}

test('a pruning job runs in a worker, streams SSE progress, and registers general + pruned (parent = general)', async (t) => {
  const server = (await startTestServer(t))!;
  const csv = await readFile(IRIS, 'utf8');
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } });
  assert.equal(started.status, 202);
  const job = (await started.json()) as any;
  assert.equal(job.state, 'queued');

  // The server answers other requests while the job trains.
  const health = await fetch(`${server.baseUrl}/healthz`);
  assert.equal(health.status, 200);

  const events = await readEvents(await server.request('GET', `/api/jobs/${job.id}/events`));
  const states = events.filter((e) => e.event === 'state').map((e) => e.data.state);
  assert.equal(states.at(-1), 'succeeded', JSON.stringify(events.at(-1)));
  const phases = new Set(events.filter((e) => e.event === 'progress').map((e) => e.data.phase));
  assert.ok(phases.has('train') && phases.has('export'), `phases: ${[...phases]}`);
  const result = events.at(-1)!.data.result;
  assert.deepEqual([result.general.version, result.pruned.version], ['1', '2']);
  // Progress saves are throttled, but the finished job keeps its last progress (export 2/2), not an earlier one.
  const lastProgress = events.filter((e) => e.event === 'progress').at(-1)!.data;
  assert.deepEqual(events.at(-1)!.data.progress, lastProgress);
  assert.deepEqual(((await (await server.request('GET', `/api/jobs/${job.id}`)).json()) as any).progress, lastProgress);

  const pruned = (await (await server.request('GET', '/api/models/iris/versions/2')).json()) as any;
  assert.deepEqual(pruned.lineage.parent, { model: 'iris', version: '1' });
  assert.equal(pruned.lineage.epsilon, 0.2);
  assert.equal(pruned.manifest.signature.keyId.length, 16);
  const blob = await server.request('GET', `/api/blobs/${pruned.manifest.files['model.onnx'].sha256}`);
  assert.equal(blob.status, 200);

  // gRPC WatchJob on a finished job: its final state, then the end of the stream.
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const watched = await jobs.stream('WatchJob', { id: job.id });
  assert.equal(watched.at(-1).job.state, 'succeeded');

  // jobs list (gRPC ListJobs): the job with what it registered; --json is GET /api/jobs.
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const [listed, json, shown, shownJson, missing] = await runCliBatch(
    [['list'], ['list', '--json'], ['show', job.id], ['show', job.id, '--json'], ['show', 'job-0000000000000000']].map((args) => ({ args: ['jobs', ...args, ...connection] })),
  );
  assert.equal(listed!.code, 0, listed!.stderr);
  assert.match(listed!.stdout, /^ID +STATE +CREATED +BY +NODE +RESULT\n/);
  assert.match(listed!.stdout, new RegExp(`^${job.id} +succeeded +\\S+ +token:\\S+ +\\S+ +iris@1, iris@2$`, 'm'));
  // jobs show (gRPC GetJob): what was asked, what it registered, the sweep; --json is GET /api/jobs/:id.
  assert.equal(shown!.code, 0, shown!.stderr);
  const restJob = (await (await server.request('GET', `/api/jobs/${job.id}`)).json()) as any;
  assert.deepEqual(
    { ...restJob.request, options: undefined },
    { name: 'iris', label: 'species', task: 'classification', data: { csv: `${csv.length} characters` }, options: undefined },
  );
  // The options as run: those given, and the defaults of the rest.
  assert.deepEqual({ ...restJob.request.options, ...TINY_OPTIONS }, restJob.request.options);
  assert.equal(restJob.request.options.patience, 15);
  assert.deepEqual(JSON.parse(shownJson!.stdout), restJob);
  const lines = shown!.stdout.split('\n');
  assert.equal(lines[0], `job        ${job.id}`);
  assert.equal(lines[1], 'state      succeeded');
  assert.equal(lines[2], 'model      iris (label species, classification)');
  assert.equal(lines[3], `data       uploaded CSV (${csv.length} characters)`);
  // Every option as run, wrapped at 100 columns.
  const options = /^options {4}[^]*?(?=\ncreated )/m.exec(shown!.stdout)![0]!;
  assert.ok(options.split('\n').every((line) => line.length <= 100) && options.includes('\n           '), options);
  const given = options.replace(/\n +/g, ' ');
  assert.ok(!given.includes('task'), 'the task is on the model line');
  for (const part of ['units 16', 'layers 2', 'epochs 20', 'retrainEpochs 5', 'epsilons [0.2]', 'baselines false', 'seed 1', 'patience 15']) assert.ok(given.includes(part), `${part} in ${given}`);
  assert.match(shown!.stdout, /^registered iris@1 \(general\) and iris@2 \(pruned\)$/m);
  assert.match(shown!.stdout, /^pruned     16-16-3 → \d+-\d+-3 \(−\d+\.\d% params\) at ε 0\.2, in \d+\.\d s \(\w+\)$/m);
  assert.match(shown!.stdout, /^ {2}ε +PARAMS +CUT +TEST\n\* 0\.2 +\d+ +\d+\.\d% +acc \d+\.\d\d%$/m);
  assert.equal(missing!.code, 2);
  assert.match(missing!.stderr, /^fleetprune: .*no job job-0000000000000000\n$/);
  // The jobs, `total` (every job, for "the newest 100 of N") and `more` (older ones after the page), as REST answers.
  const rest = (await (await server.request('GET', '/api/jobs')).json()) as { jobs: unknown[]; total: number; more: boolean };
  assert.deepEqual(JSON.parse(json!.stdout), rest);
  assert.deepEqual([rest.jobs.length, rest.total, rest.more], [1, 1, false]);
  const badLimit = await runCli(['jobs', 'list', '--limit', '0', ...connection]);
  assert.equal(badLimit.code, 2);
  await assert.rejects(jobs.call('ListJobs', { limit: 5000 }), (error: any) => error.code === status.INVALID_ARGUMENT && /limit/.test(error.details));
});

test('gRPC StartPrune streams progress with WatchJob; bad data is refused up front', async (t) => {
  const maxBodyBytes = 64 * 1024;
  const server = (await startTestServer(t, { config: { maxBodyBytes } }))!;
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  // Errors name this call's fields (csv, path, options_json), not REST's body.data.csv.
  const refused = (code: number, message: RegExp) => (error: any) => error.code === code && message.test(error.details);
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'nope', csv: 'a,b\n1,2\n' }), refused(status.INVALID_ARGUMENT, /^csv: no label column "nope"/));
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'species', path: '/etc/passwd' }), refused(status.INVALID_ARGUMENT, /^path: .*--data-root/));
  await assert.rejects(
    jobs.call('StartPrune', { name: 'iris', label: 'b', csv: 'a,b\n1,2\n', options_json: '{"units": -1}' }),
    refused(status.INVALID_ARGUMENT, /^options_json\.units: /),
  );
  await assert.rejects(jobs.call('StartPrune', { name: '../iris', label: 'b', csv: 'a,b\n1,2\n' }), refused(status.INVALID_ARGUMENT, /^name: /));
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'b', task: 'ranking', csv: 'a,b\n1,2\n' }), refused(status.INVALID_ARGUMENT, /^task: /));
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'b', csv: 'a,b\n1,2\n', options_json: '{"units": 8, "colour": 1}' }), refused(status.INVALID_ARGUMENT, /^options_json\.colour: unknown field$/));
  // Job ids are checked as REST checks them (a bad one is not echoed back in a NOT_FOUND).
  for (const method of ['GetJob', 'CancelJob']) {
    await assert.rejects(jobs.call(method, { id: 'x'.repeat(5000) }), refused(status.INVALID_ARGUMENT, /^id: must be a job id$/), method);
  }
  await assert.rejects(jobs.stream('WatchJob', { id: '../job' }), refused(status.INVALID_ARGUMENT, /^id: must be a job id$/));
  await assert.rejects(jobs.call('GetJob', { id: 'job-nope' }), refused(status.NOT_FOUND, /job-nope/));
  // Inline CSV over --max-body-bytes, as REST answers 413 for the body.
  const big = `a,b\n${'1,2\n'.repeat(maxBodyBytes / 4)}`;
  const rest = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'b', data: { csv: big } } });
  assert.equal(rest.status, 413);
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'nope', csv: big }), refused(status.RESOURCE_EXHAUSTED, new RegExp(`^csv: ${big.length} bytes, larger than the ${maxBodyBytes}-byte limit \\(--max-body-bytes\\)$`)));
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, [], 'nothing was stored');
  const csv = await readFile(IRIS, 'utf8');
  const job = await jobs.call('StartPrune', { name: 'iris', label: 'species', csv, options_json: JSON.stringify(TINY_OPTIONS) });
  const events = await jobs.stream('WatchJob', { id: job.id });
  assert.ok(events.some((e: any) => e.progress?.phase === 'train'));
  assert.equal(events.at(-1).job.state, 'succeeded', events.at(-1).job.error);
  assert.equal((await server.server.ctx.store.models.countVersions()), 2);
});

/** fleetprune_jobs_finished_total by state, from the server's /metrics. */
async function jobsFinished(server: NonNullable<Awaited<ReturnType<typeof startTestServer>>>): Promise<Record<string, number>> {
  const text = await (await server.request('GET', '/metrics')).text();
  return Object.fromEntries([...text.matchAll(/^fleetprune_jobs_finished_total\{state="(\w+)"\} (\d+)$/gm)].map((match) => [match[1]!, Number(match[2])]));
}

test('jobs cancel: a queued job never starts, a running one stops, both end cancelled (not failed), nothing is registered, a finished one is a conflict; a full queue refuses more', async (t) => {
  const server = (await startTestServer(t, { config: { maxConcurrentJobs: 1, maxQueuedJobs: 1 } }))!;
  const csv = await readFile(IRIS, 'utf8');
  // Long enough to still be training when cancelled: up to 10,000 epochs with patience 1,000.
  const long = { ...TINY_OPTIONS, epochs: 10_000, patience: 1000 };
  const start = async () => (await (await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: long } })).json()) as any;
  const running = await start();
  const queued = await start();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const job = (await (await server.request('GET', `/api/jobs/${running.id}`)).json()) as any;
    if (job.state === 'running' && job.progress?.phase === 'train') break;
    assert.ok(Date.now() < deadline, `the first job never started training: ${JSON.stringify(job)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  // One job runs and one waits (--max-queued-jobs 1): a third is refused over REST and gRPC, and not stored.
  const full = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: long } });
  assert.equal(full.status, 429);
  assert.match(((await full.json()) as any).error.message, /^1 pruning job is already waiting for a worker \(--max-queued-jobs\); try again when one has started$/);
  await assert.rejects(jobs.call('StartPrune', { name: 'iris', label: 'species', csv }), (error: any) => error.code === status.RESOURCE_EXHAUSTED && /already waiting/.test(error.details));
  assert.equal((((await (await server.request('GET', '/api/jobs')).json()) as any).jobs as unknown[]).length, 2);

  // gRPC cancels the queued one; REST cancels the running one. Both end `cancelled`, their error says who.
  const cancelledQueued = await jobs.call('CancelJob', { id: queued.id });
  assert.equal(cancelledQueued.state, 'cancelled');
  assert.match(cancelledQueued.error, /^cancelled by token:/);
  const response = await server.request('POST', `/api/jobs/${running.id}/cancel`);
  assert.equal(response.status, 200);
  const cancelledRunning = (await response.json()) as any;
  assert.equal(cancelledRunning.state, 'cancelled');
  assert.match(cancelledRunning.error, /^cancelled by token:/);
  assert.equal(server.server.ctx.jobs.running, 0, 'the worker is gone');
  assert.equal(await server.server.ctx.store.models.countVersions(), 0, 'nothing was registered');

  // Read back: cancelled over REST (GET /api/jobs/:id, GET /api/jobs), gRPC (GetJob, ListJobs, WatchJob) and the CLI.
  for (const id of [queued.id, running.id]) {
    const rest = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as any;
    assert.deepEqual([rest.state, rest.result], ['cancelled', null], id);
    assert.equal((await jobs.call('GetJob', { id })).state, 'cancelled', id);
    const watched = await jobs.stream('WatchJob', { id });
    assert.equal(watched.at(-1).job.state, 'cancelled', id);
  }
  const restList = (await (await server.request('GET', '/api/jobs')).json()) as any;
  assert.deepEqual(restList.jobs.map((job: any) => job.state), ['cancelled', 'cancelled']);
  assert.deepEqual((await jobs.call('ListJobs', {})).jobs.map((job: any) => job.state), ['cancelled', 'cancelled']);
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const [listed, shown, shownJson] = await runCliBatch([['list'], ['show', running.id], ['show', queued.id, '--json']].map((args) => ({ args: ['jobs', ...args, ...connection] })));
  assert.equal(listed!.code, 0, listed!.stderr);
  for (const id of [queued.id, running.id]) assert.match(listed!.stdout, new RegExp(`^${id} +cancelled +\\S+ +token:\\S+ +\\S+ +cancelled by token:\\S+$`, 'm'));
  assert.equal(shown!.code, 0, shown!.stderr);
  assert.equal(shown!.stdout.split('\n')[1], 'state      cancelled');
  assert.match(shown!.stdout, /^reason {5}cancelled by token:\S+$/m);
  assert.doesNotMatch(shown!.stdout, /^error /m, 'a cancel is no error');
  assert.equal(JSON.parse(shownJson!.stdout).state, 'cancelled');
  // `jobs watch` on a cancelled job: not a success (0), not a failure (1): exit 4, saying who cancelled it.
  const watch = await runCli(['jobs', 'watch', running.id, ...connection]);
  assert.equal(watch.code, 4, watch.stderr);
  assert.equal(watch.stderr.trimEnd().split('\n').at(-1), `fleetprune: job ${running.id} was cancelled (${cancelledRunning.error})`);
  assert.equal(watch.stdout, '');
  // Counted as cancelled, never as failed (an alert on failed jobs must not fire for a cancel).
  assert.deepEqual(await jobsFinished(server), { succeeded: 0, failed: 0, cancelled: 2 });

  // Cancelling again is a conflict and changes nothing; a malformed id is a 400.
  const again = await server.request('POST', `/api/jobs/${running.id}/cancel`);
  assert.equal(again.status, 409);
  assert.match(((await again.json()) as any).error.message, /already cancelled; nothing to cancel/);
  assert.equal((await server.request('POST', '/api/jobs/not-a-job/cancel')).status, 400);
  await assert.rejects(jobs.call('CancelJob', { id: 'job-missing' }), /no job job-missing/);
  const cli = await runCli(['jobs', 'cancel', running.id, ...connection]);
  assert.equal(cli.code, 2);
  assert.equal(cli.stderr.trim(), `fleetprune: job ${running.id} already cancelled; nothing to cancel`);
  const audit = (await (await server.request('GET', '/api/audit')).json()) as any;
  assert.equal(audit.entries.filter((e: any) => e.action === 'job.cancel').length, 2);
  assert.deepEqual(await jobsFinished(server), { succeeded: 0, failed: 0, cancelled: 2 }, 'a refused cancel counts nothing');

  // The queue moves on: a new job runs to completion after the cancellations.
  const next = (await (await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } })).json()) as any;
  const events = await jobs.stream('WatchJob', { id: next.id });
  assert.equal(events.at(-1).job.state, 'succeeded', events.at(-1).job.error);
  assert.deepEqual(await jobsFinished(server), { succeeded: 1, failed: 0, cancelled: 2 });
});

test('a job that fails in its worker frees the slot for the next queued job; too few rows to split are refused up front', async (t) => {
  const server = (await startTestServer(t, { config: { maxConcurrentJobs: 1 } }))!;
  const tiny = await server.request('POST', '/api/jobs/prune', { json: { name: 'tiny', label: 'b', data: { csv: 'a,b\n1,x\n2,y\n3,x\n' }, options: TINY_OPTIONS } });
  assert.equal(tiny.status, 400);
  assert.match(((await tiny.json()) as any).error.message, /^3 rows are too few to split into train, validation \(15%\) and test \(20%\), stratified by class: the .* would be empty$/);
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, [], 'nothing was stored');

  // The worker fails (it reads the training backend from its environment) and then stays alive.
  const csv = await readFile(IRIS, 'utf8');
  const start = async () => (await (await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } })).json()) as any;
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const watch = async (id: string) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        jobs.stream('WatchJob', { id }),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`job ${id} did not finish within 90 s`)), 90_000))),
      ]);
    } finally {
      // A pending 90 s timer would hold this file's test process open long after its last test.
      clearTimeout(timer);
    }
  };
  process.env.FLEETPRUNE_TF_BACKEND = 'bogus';
  t.after(() => delete process.env.FLEETPRUNE_TF_BACKEND);
  const failing = await start();
  const failed = (await watch(failing.id)).at(-1).job;
  assert.equal(failed.state, 'failed');
  assert.match(failed.error, /^FLEETPRUNE_TF_BACKEND: must be one of/);
  delete process.env.FLEETPRUNE_TF_BACKEND;
  // A real failure stays failed, everywhere: REST, the metric, `jobs list` and `jobs watch` (exit 1).
  assert.equal(((await (await server.request('GET', `/api/jobs/${failing.id}`)).json()) as any).state, 'failed');
  assert.deepEqual(await jobsFinished(server), { succeeded: 0, failed: 1, cancelled: 0 });
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const listed = await runCli(['jobs', 'list', ...connection]);
  assert.match(listed.stdout, new RegExp(`^${failing.id} +failed +.* FLEETPRUNE_TF_BACKEND: must be one of`, 'm'));
  const watched = await runCli(['jobs', 'watch', failing.id, ...connection]);
  assert.equal(watched.code, 1, watched.stderr);
  assert.match(watched.stderr.trimEnd().split('\n').at(-1)!, new RegExp(`^fleetprune: job ${failing.id} failed: FLEETPRUNE_TF_BACKEND: must be one of`));

  const next = await start();
  const finished = (await watch(next.id)).at(-1).job;
  assert.equal(finished.state, 'succeeded', finished.error);
  // The worker is terminated once its result is in; it exits a moment after the job ends.
  const deadline = Date.now() + 10_000;
  while (server.server.ctx.jobs.running > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(server.server.ctx.jobs.running, 0, 'no worker is left running');
});

test('jobs prune (CLI): bad flags and data are refused before the request, naming the flag; nothing is stored', async (t) => {
  const server = (await startTestServer(t))!;
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-jobs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const empty = join(dir, 'empty.csv');
  await writeFile(empty, '\n');
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const cases: [string, string[], RegExp][] = [
    ['empty data file', ['--data', empty, '--label', 'species'], /^fleetprune: --data: .*empty\.csv is empty$/],
    ['tolerance below 0', ['--data', IRIS, '--label', 'species', '--tolerance', '-1'], /^fleetprune: --tolerance: /],
    ['regression tolerance below 0', ['--data', IRIS, '--label', 'species', '--task', 'regression', '--tolerance', '-5'], /^fleetprune: --tolerance: /],
    ['bad task', ['--data', IRIS, '--label', 'species', '--task', 'ranking'], /^fleetprune: --task: must be classification or regression, not "ranking"$/],
    ['bad name', ['--data', IRIS, '--label', 'species', '--name', 'a b'], /^fleetprune: --name: must be 1-64 characters/],
    ['hex seed', ['--data', IRIS, '--label', 'species', '--seed', '0x1'], /--seed.*not a decimal number/],
  ];
  const runs = await runCliBatch(cases.map(([, args]) => ({ args: ['jobs', 'prune', ...args, ...connection] })));
  for (const [index, [name, , message]] of cases.entries()) {
    const run = runs[index]!;
    assert.equal(run.code, 2, `${name}: ${run.stderr}`);
    assert.match(run.stderr.split('\n')[0]!, message, name);
  }
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, [], 'no job was submitted');
});

test('jobs prune (CLI) without --task reads --tolerance in the unit of the task the data has (an MSE percentage for a regression)', async (t) => {
  const server = (await startTestServer(t))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const diabetes = fileURLToPath(new URL('../../shared/datasets/diabetes.csv', import.meta.url));
  const run = await runCli(['jobs', 'prune', '--data', diabetes, '--label', 'progression', '--tolerance', '10', '--detach', ...connection]);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  const request = (await server.server.ctx.store.jobs.get(id))!.request as any;
  assert.equal(request.options.toleranceMseFraction, 0.1, JSON.stringify(request.options));
  assert.equal(request.options.toleranceAccuracyPoints, 0.5, 'not read as accuracy points');
  await server.request('POST', `/api/jobs/${id}/cancel`);
  // A file on the server cannot be read here: the unit needs --task.
  const blind = await runCli(['jobs', 'prune', '--server-path', 'diabetes.csv', '--label', 'progression', '--tolerance', '10', ...connection]);
  assert.equal(blind.code, 2);
  assert.match(blind.stderr, /^fleetprune: --tolerance: give --task with --server-path/);
  // --loss-tolerance is classification's: refused for the regression data, with or without --task.
  for (const task of [[], ['--task', 'regression']]) {
    const loss = await runCli(['jobs', 'prune', '--data', diabetes, '--label', 'progression', ...task, '--loss-tolerance', '7', ...connection]);
    assert.equal(loss.code, 2, loss.stderr);
    assert.match(loss.stderr, /^fleetprune: --loss-tolerance: applies to classification only/);
  }
  assert.equal(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs.length, 1, 'only the first job was submitted');
});

test('jobs prune --server-path with --loss-tolerance on a regression data set the server holds: the server refuses it, told in the flags given', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-loss-tolerance-root-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await copyFile(fileURLToPath(new URL('../../shared/datasets/diabetes.csv', import.meta.url)), join(root, 'diabetes.csv'));
  const server = (await startTestServer(t, { config: { dataRoot: root } }))!;
  const run = await runCli(['jobs', 'prune', '--server-path', 'diabetes.csv', '--label', 'progression', '--loss-tolerance', '0.3', '--detach', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.deepEqual([run.code, run.stderr], [2, 'fleetprune: --loss-tolerance: applies to classification only (the validation cross-entropy), and this data set is a regression one: its tolerance is --tolerance, in percent of the MSE\n']);
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, [], 'no job was submitted');
});

test('a job without a task whose label it takes as a regression target of a handful of values says so, in its result and in jobs show; one given the task does not', async (t) => {
  const server = (await startTestServer(t))!;
  // Grades 0.5, 1.5, 2.5: numbers, not integers, so inferred as a regression target.
  const rows = Array.from({ length: 60 }, (_, i) => `${(i * 7) % 10},${(i * 3) % 11},${['0.5', '1.5', '2.5'][i % 3]}`);
  const csv = `a,b,grade\n${rows.join('\n')}\n`;
  const options = { units: 8, layers: 2, epochs: 5, retrainEpochs: 2, epsilons: [0.3], baselines: false, seed: 1 };
  const finished = async (task?: string) => {
    const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'grades', label: 'grade', ...(task ? { task } : {}), data: { csv }, options } });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    await (await server.request('GET', `/api/jobs/${id}/events`)).text(); // until it ends
    const job = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as any;
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    return job;
  };
  const warning = 'the label "grade" has only 3 distinct values (0.5, 1.5, 2.5), so it was taken as a regression target: if they are classes, give the task as classification (--task classification, or "task": "classification" in a job request)';
  const inferred = await finished();
  assert.equal(inferred.request.task, 'regression');
  assert.ok(inferred.result.summary.warnings.includes(warning), JSON.stringify(inferred.result.summary.warnings));
  const shown = await runCli(['jobs', 'show', inferred.id, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.ok(shown.stdout.split('\n').includes(`warning    ${warning}`), shown.stdout);
  const given = await finished('regression');
  assert.ok(!given.result.summary.warnings.some((line: string) => line.startsWith('the label')), JSON.stringify(given.result.summary.warnings));
});

test('two servers on one PostgreSQL database: starting or stopping one leaves the other\'s jobs alone; a cancel goes to the owner', async (t) => {
  const a = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-a' } });
  if (!a) return;
  const { databaseUrl, databaseSchema } = a.server.ctx.config;
  const csv = await readFile(IRIS, 'utf8');
  const long = { ...TINY_OPTIONS, epochs: 10_000, patience: 1000 };
  const job = (await (await a.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: long } })).json()) as any;
  assert.equal(job.node, 'node-a');
  const state = async () => (await (await a.request('GET', `/api/jobs/${job.id}`)).json()) as any;
  const deadline = Date.now() + 60_000;
  while ((await state()).progress?.phase !== 'train') {
    assert.ok(Date.now() < deadline, 'the job never started training');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  // A second server starts on the same database (a standby, or a restart elsewhere): it fails only its own unfinished jobs.
  const b = (await startTestServer(t, { engine: 'postgres', config: { databaseUrl, databaseSchema, nodeId: 'node-b' } }))!;
  assert.equal((await state()).state, 'running', 'node-b\'s start failed node-a\'s job');
  const elsewhere = await b.request('POST', `/api/jobs/${job.id}/cancel`);
  assert.equal(elsewhere.status, 503);
  assert.equal(
    ((await elsewhere.json()) as any).error.message,
    `job ${job.id} runs on server node-a; send the cancel there (this is node-b). If that server is gone, its jobs fail on their own once unrenewed for 90 s`,
  );
  await b.server.close();
  assert.equal((await state()).state, 'running', 'node-b\'s shutdown failed node-a\'s job');

  const cancelled = await a.request('POST', `/api/jobs/${job.id}/cancel`);
  assert.equal(cancelled.status, 200);
  const answer = (await cancelled.json()) as any;
  assert.equal(answer.state, 'cancelled');
  assert.match(answer.error, /^cancelled by /);
});

/** The job's end, over gRPC WatchJob, within 60 s. */
async function jobEnd(server: NonNullable<Awaited<ReturnType<typeof startTestServer>>>, t: import('node:test').TestContext, id: string): Promise<any> {
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  let timer: NodeJS.Timeout | undefined;
  try {
    const events = await Promise.race([
      jobs.stream('WatchJob', { id }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`job ${id} did not finish within 60 s`)), 60_000))),
    ]);
    return events.at(-1).job;
  } finally {
    clearTimeout(timer);
  }
}

test('a job fails at once, before training, when the server cannot write job output or lacks the disk for its models', async (t) => {
  const server = (await startTestServer(t))!;
  const [node] = await readdir(join(server.dataDir, 'jobs'));
  const workDir = join(server.dataDir, 'jobs', node!);
  const csv = await readFile(IRIS, 'utf8');
  const start = async (options: object) => (await (await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options } })).json()) as any;

  // Unwritable: the work directory is a file (permission bits do not stop root; this does).
  await rm(workDir, { recursive: true });
  await writeFile(workDir, '');
  const unwritable = await jobEnd(server, t, (await start(TINY_OPTIONS)).id);
  assert.equal(unwritable.state, 'failed');
  assert.equal(unwritable.error, "the server cannot write job output in its --data-dir's jobs/ directory (ENOTDIR); nothing was trained");
  assert.equal(JSON.parse(unwritable.progress_json || 'null'), null, 'no phase ran');
  await rm(workDir);
  await mkdir(workDir);

  // Too little room: a 2 MB file system in the work directory's place.
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', workDir], { stdio: 'ignore' });
  } catch {
    return t.skip('cannot mount a tmpfs here (needs root): the free-space check is not exercised');
  }
  // Unmounted before the server's data dir is removed (cleanups run last first): rm of a mount point fails, EBUSY, after retrying for seconds.
  deferCleanup(t, () => execFileSync('umount', ['-l', workDir]));
  const big = await jobEnd(server, t, (await start({ ...TINY_OPTIONS, units: 1024 })).id);
  assert.equal(big.state, 'failed');
  assert.match(big.error, /^the server's --data-dir has 2\.0 MB free in its jobs\/ directory, and this job's models need about \d+\.\d MB: free disk space on the server, or use fewer --units or --layers; nothing was trained$/);
  assert.equal(JSON.parse(big.progress_json || 'null'), null, 'no phase ran');
  // A small job fits, and runs.
  const small = await jobEnd(server, t, (await start(TINY_OPTIONS)).id);
  assert.equal(small.state, 'succeeded', small.error);

  // The blob store on a small file system of its own: the job's copies would land there after the
  // training, and failed it then; the check names the blob store, not the work directory.
  execFileSync('umount', ['-l', workDir]);
  const blobs = server.server.ctx.blobs.root;
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', blobs], { stdio: 'ignore' });
  deferCleanup(t, () => execFileSync('umount', ['-l', blobs]));
  const bigForBlobs = await jobEnd(server, t, (await start({ ...TINY_OPTIONS, units: 1024 })).id);
  assert.equal(bigForBlobs.state, 'failed');
  assert.match(bigForBlobs.error, /^the server's blob store \(--data-dir's blobs\/\) has 2\.0 MB free, and this job's models need about \d+\.\d MB there: free disk space on the server, or use fewer --units or --layers; nothing was trained$/);
  assert.equal(JSON.parse(bigForBlobs.progress_json || 'null'), null, 'no phase ran');
});
