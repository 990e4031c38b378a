import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const LONG = { units: 16, layers: 2, epochs: 10_000, patience: 1000, retrainEpochs: 0, epsilons: [0.2], baselines: false, seed: 1 };

test('jobs watch cut off by a server shutdown says the server ended the watch (not "Call cancelled", which reads as a cancelled job)', async (t) => {
  const server = (await startTestServer(t))!;
  const csv = await readFile(IRIS, 'utf8');
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: LONG } });
  const { id } = (await started.json()) as { id: string };

  const child = spawn(process.execPath, ['bin/fleetprune.js', 'jobs', 'watch', id, '--server', server.grpcAddress, '--token', ADMIN_TOKEN], {
    cwd: REPO,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  // The watch follows the job's training before the server goes.
  const deadline = Date.now() + 60_000;
  while (!/^ {2}train \d+\/10000/m.test(stderr)) {
    assert.ok(Date.now() < deadline, `the watch never showed training: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  await server.server.close();
  const [code] = await exited;
  assert.equal(code, 2, stderr);
  const last = stderr.trimEnd().split('\n').at(-1)!;
  assert.equal(
    last,
    `fleetprune: job ${id}: the server ended the watch before the job finished (Call cancelled); it may have shut down or restarted: \`fleetprune jobs watch ${id}\` shows how the job ended`,
  );
});

test('jobs prune without --detach, its job cancelled: the watch ends with exit 4 (cancelled: neither success nor failure), saying who cancelled it', async (t) => {
  const server = (await startTestServer(t))!;
  // The real blob store, held a moment on the job's first file: the cancel lands there, after training, every time.
  const { blobs } = server.server.ctx;
  const put = blobs.put.bind(blobs);
  let storing!: () => void;
  const inStorage = new Promise<void>((resolve) => (storing = resolve));
  let held = false;
  blobs.put = async (...args) => {
    if (!held) {
      held = true;
      storing();
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    return put(...args);
  };
  const tiny = ['--units', '16', '--layers', '2', '--epochs', '20', '--epsilon', '0.2', '--seed', '1'];
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'jobs', 'prune', '--data', IRIS, '--label', 'species', ...tiny, '--server', server.grpcAddress, '--token', ADMIN_TOKEN], {
    cwd: REPO,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  await inStorage;
  const [job] = ((await (await server.request('GET', '/api/jobs')).json()) as { jobs: { id: string }[] }).jobs;
  const cancelled = await server.request('POST', `/api/jobs/${job!.id}/cancel`);
  const answer = (await cancelled.json()) as { state: string; error: string };
  assert.equal(cancelled.status, 200, JSON.stringify(answer));
  assert.equal(answer.state, 'cancelled');

  const [code] = await exited;
  assert.equal(code, 4, stderr);
  assert.match(stderr, new RegExp(`^${job!.id}: cancelled$`, 'm'), 'the watch shows the state');
  assert.equal(stderr.trimEnd().split('\n').at(-1), `fleetprune: job ${job!.id} was cancelled (${answer.error})`);
  assert.equal(stdout, '', 'nothing registered, nothing printed');
});
