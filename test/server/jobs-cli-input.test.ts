import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, runCliBatch, tempDir } from '../helpers/cli.ts';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

// As jobs.test.ts's (imported from there, its tests would run here too).
const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

/** 60 rows of two features and a two-class label, the first feature named `first`. */
function csvWithFeatureName(first: string): string {
  const rows = Array.from({ length: 60 }, (_, i) => `${i % 7},${(i * 3) % 11},${i % 2 ? 'a' : 'b'}`);
  return [`${first},b,label`, ...rows].join('\n') + '\n';
}

test('jobs prune --data naming a FIFO or a directory is a one-line usage error naming --data (a FIFO hung the CLI for ever); no job is submitted', { skip: process.platform === 'win32' }, async (t) => {
  const server = (await startTestServer(t))!;
  const dir = await tempDir(t);
  const fifo = join(dir, 'data.csv');
  execFileSync('mkfifo', [fifo]);
  const directory = join(dir, 'folder.csv');
  await mkdir(directory);
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  for (const data of [fifo, directory]) {
    const run = await runCli(['jobs', 'prune', '--data', data, '--label', 'label', ...connection], {}, { timeoutMs: 30_000 });
    assert.equal(run.code, 2, `${data}: exit ${run.code} (-1: killed, still running after 30 s): ${run.stderr}`);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr, /^fleetprune: --data: cannot read .* \(not a regular file\)$/m);
  }
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, []);
});

test('jobs prune --data that is not CSV text (a Windows-1252 export, a gzip file, UTF-16) is named before anything is sent, as prune names it', async (t) => {
  const dir = await tempDir(t);
  const latin1 = join(dir, 'latin1.csv');
  await writeFile(latin1, Buffer.from('a,b,y\n1,2,B\xe4r\n3,4,B\xf6r\n', 'latin1'));
  const gzip = join(dir, 'data.csv.gz');
  await writeFile(gzip, Buffer.from('1f8b0800000000000003', 'hex'));
  // UTF-16 (Notepad's "Unicode"): the server was sent it, and answered "request.csv: contains a NUL character".
  const utf16 = join(dir, 'utf16.csv');
  await writeFile(utf16, Buffer.from('\ufeffa,b,y\n1,2,x\n3,4,z\n', 'utf16le'));
  // No server: the refusal comes before any connection.
  const runs = await runCliBatch([latin1, gzip, utf16].map((data) => ({ args: ['jobs', 'prune', '--data', data, '--label', 'y', '--server', '127.0.0.1:1', '--token', 'x'] })));
  assert.deepEqual(runs.map((run) => run.code), [2, 2, 2]);
  assert.match(runs[2]!.stderr, /^fleetprune: --data .*utf16\.csv: the file is UTF-16 text, not UTF-8; save it as CSV in UTF-8\n$/);
  assert.match(runs[0]!.stderr, /^fleetprune: --data .*latin1\.csv: line 2 is not UTF-8 text \(Windows-1252 or Latin-1/);
  assert.match(runs[1]!.stderr, /^fleetprune: --data .*data\.csv\.gz: the file is gzip-compressed, not CSV text: decompress it first \(gunzip\)\n$/);
});

test('column names too long for a readable manifest.json: prune exits 2 before training and writes nothing; a job is refused (400) and not stored', async (t) => {
  // Before: prune trained and wrote an artifact its own verify refused ("manifest.json: 1101542 bytes,
  // more than a manifest can be"), and a job trained, then failed as an internal error.
  const dir = await tempDir(t);
  const csv = csvWithFeatureName('f'.repeat(1_100_000));
  const data = join(dir, 'wide.csv');
  await writeFile(data, csv);
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', data, '--label', 'label', '--out', out, '--units', '2', '--layers', '1', '--epochs', '1', '--epsilon', '0.5']);
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /^fleetprune: .*wide\.csv: the column and class names take \d+ bytes in the model's manifest\.json/);
  assert.equal(existsSync(out), false, 'nothing written');

  const server = (await startTestServer(t))!;
  const response = await server.request('POST', '/api/jobs/prune', { json: { name: 'wide', label: 'label', data: { csv }, options: TINY_OPTIONS } });
  const body = (await response.json()) as any;
  assert.equal(response.status, 400, JSON.stringify(body).slice(0, 300));
  assert.match(body.error.message, /^body\.data\.csv: the column and class names take \d+ bytes/);
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, []);
});

test('jobs prune with an empty --data or --server-path names that flag (it blamed --name, which was not given); no job is submitted', async (t) => {
  const server = (await startTestServer(t))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const cases: [string[], RegExp][] = [
    [['--data', ''], /^fleetprune: --data: the path is empty$/],
    [['--server-path', ''], /^fleetprune: --server-path: the path is empty$/],
  ];
  const runs = await runCliBatch(cases.map(([args]) => ({ args: ['jobs', 'prune', ...args, '--label', 'label', ...connection] })));
  for (const [index, [args, message]] of cases.entries()) {
    const run = runs[index]!;
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr.trim(), message, args.join(' '));
  }
  assert.deepEqual(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs, []);
});

test('prune --out a directory whose manifest.json is a FIFO is refused in one line before training (it hung reading it); the FIFO stays', { skip: process.platform === 'win32' }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  await mkdir(out);
  execFileSync('mkfifo', [join(out, 'manifest.json')]);
  const iris = new URL('../../shared/datasets/iris.csv', import.meta.url).pathname;
  const run = await runCli(['prune', '--data', iris, '--label', 'species', '--out', out, '--units', '2', '--layers', '1', '--epochs', '1', '--epsilon', '0.5'], {}, { timeoutMs: 30_000 });
  assert.equal(run.code, 2, `exit ${run.code} (-1: killed, still running after 30 s): ${run.stderr}`);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /^fleetprune: cannot write artifact to .*out: its manifest\.json is not a regular file; refusing to replace it$/m);
  assert.ok(lstatSync(join(out, 'manifest.json')).isFIFO(), 'left as it was');
  assert.equal(existsSync(`${out}.lock`), false, 'no lock left behind');
});

test('jobs prune --tolerance without --task is checked against the task inferred from --data: 500 (% of the MSE) starts a regression job; out of range for the inferred task is refused in one line', async (t) => {
  // Before: the flags were checked as classification before the data was read, and 500 (over 100 accuracy points) was refused.
  const server = (await startTestServer(t))!;
  const datasets = new URL('../../shared/datasets/', import.meta.url).pathname;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const [regression, tooMuch, classification] = await runCliBatch([
    { args: ['jobs', 'prune', '--data', `${datasets}diabetes.csv`, '--label', 'progression', '--tolerance', '500', '--units', '2', '--layers', '1', '--epochs', '1', '--detach', ...connection] },
    { args: ['jobs', 'prune', '--data', `${datasets}diabetes.csv`, '--label', 'progression', '--tolerance', '5000', '--detach', ...connection] },
    { args: ['jobs', 'prune', '--data', `${datasets}iris.csv`, '--label', 'species', '--tolerance', '500', '--detach', ...connection] },
  ]);
  assert.equal(regression!.code, 0, regression!.stderr);
  const id = regression!.stdout.trim();
  const job = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as any;
  assert.equal(job.request.task, 'regression');
  assert.equal(job.request.options.toleranceMseFraction, 5);
  await server.request('POST', `/api/jobs/${id}/cancel`);
  assert.equal(tooMuch!.code, 2, tooMuch!.stderr);
  assert.equal(tooMuch!.stderr, 'fleetprune: --tolerance: for regression, a percentage of the MSE from 0 to 1000, not 5000\n');
  assert.equal(classification!.code, 2, classification!.stderr);
  assert.equal(classification!.stderr, 'fleetprune: --tolerance: for classification, accuracy points from 0 to 100, not 500\n');
  assert.equal(((await (await server.request('GET', '/api/jobs')).json()) as any).jobs.length, 1, 'only the valid job was submitted');
});

test('jobs prune --data larger than any server accepts (a sparse 600 MiB file) is refused in one line before it is read (it exited 1, "internal error: Cannot create a string longer than...")', async (t) => {
  const dir = await tempDir(t);
  const big = join(dir, 'big.csv');
  await writeFile(big, 'a,b,y\n');
  await truncate(big, 600 * 1024 * 1024); // sparse: no disk used, no time spent
  // No server: the refusal comes before any connection.
  const run = await runCli(['jobs', 'prune', '--data', big, '--label', 'y', '--server', '127.0.0.1:1', '--token', 'x'], {}, { timeoutMs: 60_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.equal(run.stderr, `fleetprune: --data: ${big} is 629145600 bytes, more than any server accepts (at most 536870888 bytes of CSV, and only with its --max-body-bytes raised that far from the 16 MiB default)\n`);
});
