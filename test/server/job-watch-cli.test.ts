import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { openStore } from '../../server/store/open-store.ts';
import { startCli } from '../helpers/cli.ts';
import { holdFirstBlobPut } from './helpers/hold-blob-put.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const LONG = { units: 16, layers: 2, epochs: 10_000, patience: 1000, retrainEpochs: 0, epsilons: [0.2], baselines: false, seed: 1 };

test('jobs watch of a job that a server shutdown ends hears that it failed (exit 1), not a cut-off stream alone', async (t) => {
  const server = (await startTestServer(t))!;
  const csv = await readFile(IRIS, 'utf8');
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: LONG } });
  const { id } = (await started.json()) as { id: string };

  const { output, exited } = startCli(t, ['jobs', 'watch', id, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  // The watch follows the job's training before the server goes.
  const deadline = Date.now() + 60_000;
  while (!/^ {2}train \d+\/10000/m.test(output.stderr)) {
    assert.ok(Date.now() < deadline, `the watch never showed training: ${output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  await server.server.close();
  const [code] = await exited;
  const last = output.stderr.trimEnd().split('\n').at(-1)!;
  // The server fails its unfinished jobs before its listeners close, and tells their watchers: the
  // watch ends with the job's end (it ended with "Call cancelled" alone, exit 5, the job's end unseen).
  assert.deepEqual([code, last], [1, `fleetprune: job ${id} failed: server shut down before the job finished`], output.stderr);
  // The job as stored keeps the progress its watchers last saw (progress writes are throttled: it was behind).
  const shown = Math.max(...[...output.stderr.matchAll(/^ {2}train (\d+)\/10000/gm)].map((match) => Number(match[1])));
  const store = await openStore({ engine: 'sqlite', dataDir: server.dataDir });
  t.after(() => store.close());
  const stored = (await store.jobs.get(id))!;
  assert.equal(stored.state, 'failed');
  assert.ok((stored.progress as { done: number }).done >= shown, `stored progress ${JSON.stringify(stored.progress)}, last shown train ${shown}`);
});

test('jobs prune without --detach, its job cancelled: the watch ends with exit 4 (cancelled: neither success nor failure), saying who cancelled it', async (t) => {
  const server = (await startTestServer(t))!;
  // The real blob store, held a moment on the job's first file: the cancel lands there, after training, every time.
  const inStorage = holdFirstBlobPut(server.server.ctx.blobs);
  const tiny = ['--units', '16', '--layers', '2', '--epochs', '20', '--epsilon', '0.2', '--seed', '1'];
  const { output, exited } = startCli(t, ['jobs', 'prune', '--data', IRIS, '--label', 'species', ...tiny, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  await inStorage;
  const [job] = ((await (await server.request('GET', '/api/jobs')).json()) as { jobs: { id: string }[] }).jobs;
  const cancelled = await server.request('POST', `/api/jobs/${job!.id}/cancel`);
  const answer = (await cancelled.json()) as { state: string; error: string };
  assert.equal(cancelled.status, 200, JSON.stringify(answer));
  assert.equal(answer.state, 'cancelled');

  const [code] = await exited;
  assert.equal(code, 4, output.stderr);
  assert.match(output.stderr, new RegExp(`^${job!.id}: cancelled$`, 'm'), 'the watch shows the state');
  assert.equal(output.stderr.trimEnd().split('\n').at(-1), `fleetprune: job ${job!.id} was cancelled (${answer.error})`);
  assert.equal(output.stdout, '', 'nothing registered, nothing printed');
});

test('Ctrl-C on jobs watch (or jobs prune without --detach) stops the watching, not the job, and says so: exit 130, the job runs on', async (t) => {
  const server = (await startTestServer(t))!;
  const csv = await readFile(IRIS, 'utf8');
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: LONG } });
  const { id } = (await started.json()) as { id: string };
  t.after(() => server.request('POST', `/api/jobs/${id}/cancel`).catch(() => {}));

  const { child, output, exited } = startCli(t, ['jobs', 'watch', id, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  const deadline = Date.now() + 60_000;
  while (!/^ {2}train \d+\/10000/m.test(output.stderr)) {
    assert.ok(Date.now() < deadline, `the watch never showed training: ${output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGINT');
  const [code] = await exited;
  assert.equal(code, 130, output.stderr);
  assert.equal(
    output.stderr.trimEnd().split('\n').at(-1),
    `fleetprune: stopped following job ${id}; it goes on on the server (\`fleetprune jobs watch ${id}\` follows it again, \`fleetprune jobs cancel ${id}\` stops it)`,
  );
  const job = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as { state: string };
  assert.equal(job.state, 'running', 'the job was not touched');
});

test("jobs prune without --detach prints the data set's warnings after the models it registered, as a local prune does", async (t) => {
  const server = (await startTestServer(t))!;
  // iris with a row-number column in front: the job succeeds, with a warning naming it.
  const [header, ...rows] = (await readFile(IRIS, 'utf8')).trimEnd().split('\n');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-jobwarn-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const data = join(dir, 'iris-id.csv');
  await writeFile(data, [`id,${header}`, ...rows.map((row, i) => `${i + 1},${row}`)].join('\n'));
  const tiny = ['--units', '16', '--layers', '2', '--epochs', '20', '--epsilon', '0.2', '--seed', '1'];
  const { output, exited } = startCli(t, ['jobs', 'prune', '--data', data, '--label', 'species', ...tiny, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  const [code] = await exited;
  assert.equal(code, 0, output.stderr);
  assert.match(output.stdout, /^registered iris-id@1 \(general\) and iris-id@2 \(pruned\)$/m);
  assert.match(output.stderr, /^warning: feature "id" looks like a row number \(/m, output.stderr);
});
