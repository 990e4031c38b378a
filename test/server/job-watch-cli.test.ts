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
