import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN } from './helpers/test-server.ts';
import { killHard, spawnServer, type ServerProcess } from './helpers/server-process.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function api(server: ServerProcess, path: string): Promise<any> {
  const response = await fetch(`${server.baseUrl}${path}`, { headers: auth });
  return response.json();
}

test('kill -9 during a blob upload leaves no partial blob and no version', async (t) => {
  const dataDir = await tempDir(t);
  const server = await spawnServer(t, dataDir);
  const bytes = Buffer.alloc(4 * 1024 * 1024, 3);
  const sha = createHash('sha256').update(bytes).digest('hex');
  // Send half the body, then kill the server while it waits for the rest.
  const upload = request(`${server.baseUrl}/api/blobs/${sha}`, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
  });
  upload.on('error', () => {});
  upload.write(bytes.subarray(0, bytes.length / 2));
  // The server process writes the upload to a temporary file once it has taken the request in.
  let tmpFiles = await readdir(join(dataDir, 'blobs', 'tmp'));
  for (const deadline = Date.now() + 30_000; tmpFiles.length === 0 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    tmpFiles = await readdir(join(dataDir, 'blobs', 'tmp'));
  }
  assert.equal(tmpFiles.length, 1, 'the upload was in progress');
  await killHard(server);
  upload.destroy();
  // Partial uploads are cleared once idle for an hour (younger ones may be another server's, sharing
  // the data directory, still in flight).
  const hoursAgo = new Date(Date.now() - 2 * 3600_000);
  await utimes(join(dataDir, 'blobs', 'tmp', tmpFiles[0]!), hoursAgo, hoursAgo);
  await writeFile(join(dataDir, 'blobs', 'tmp', 'in-flight-elsewhere'), 'x');

  const restarted = await spawnServer(t, dataDir);
  assert.deepEqual(await readdir(join(dataDir, 'blobs', 'tmp')), ['in-flight-elsewhere'], 'the stale partial upload was cleared, the fresh one kept');
  const blob = await fetch(`${restarted.baseUrl}/api/blobs/${sha}`, { headers: auth });
  assert.equal(blob.status, 404);
  assert.deepEqual((await api(restarted, '/api/models')).models, []);
  await killHard(restarted);
});

test('kill -9 during a pruning job: no half-registered version, and the job is failed with its reason after restart', async (t) => {
  const dataDir = await tempDir(t);
  const server = await spawnServer(t, dataDir);
  const csv = await readFile(IRIS, 'utf8');
  const started = await fetch(`${server.baseUrl}/api/jobs/prune`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'iris', label: 'species', data: { csv }, options: { units: 64, epochs: 5000, patience: 1000, baselines: false } }),
  });
  const job = (await started.json()) as any;
  // Wait until it is training, then kill the server.
  const events = await fetch(`${server.baseUrl}/api/jobs/${job.id}/events`, { headers: auth });
  const reader = events.body!.getReader();
  let seen = '';
  while (!seen.includes('"phase":"train"')) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  assert.match(seen, /"phase":"train"/);
  await killHard(server);
  await reader.cancel().catch(() => {});

  const restarted = await spawnServer(t, dataDir);
  const after = await api(restarted, `/api/jobs/${job.id}`);
  assert.equal(after.state, 'failed');
  assert.equal(after.error, 'server restarted before the job finished');
  assert.deepEqual((await api(restarted, '/api/models')).models, []);
  assert.equal(typeof after.node, 'string', 'the job names the server that ran it');
  assert.deepEqual(await readdir(join(dataDir, 'jobs', after.node)), [], 'the server\'s job work directory was cleared');
  await killHard(restarted);
});
