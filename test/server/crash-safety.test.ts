import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, realpath, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN } from './helpers/test-server.ts';
import { killHard, spawnServer, type ServerProcess } from './helpers/server-process.ts';
import { runCli } from '../helpers/cli.ts';
import { createServer, type AddressInfo } from 'node:net';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { startServer } from '../../server/app/start-server.ts';
import { createLogger } from '../../shared/util/log.ts';
import { freshStoreLocation } from './helpers/store-engines.ts';
import { SQLITE_FILE } from '../../server/store/open-store.ts';

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

/** Every file under `dir` with the sha256 of its content; the running server's SQLite files by name only (it writes them as it runs). */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    // (fleetprune.sqlite, -wal, -shm: a pattern for `.db` files matched none of them, so a running server's reads that touched the -shm failed this.)
    files[relative(dir, path)] = entry.name.startsWith(SQLITE_FILE) ? 'sqlite' : createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return files;
}

test('one server per SQLite data dir: a second one exits 2 naming the holder; after kill -9 the next one takes the lock over; a clean stop removes it', async (t) => {
  const dataDir = await tempDir(t);
  const lockFile = join(dataDir, 'server.lock');
  const first = await spawnServer(t, dataDir);
  const filesBefore = await snapshot(dataDir);

  // A second server that runs (as before the lock) is killed after 20 s: code -1.
  const second = await runCli(['server', '--data-dir', dataDir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN }, { timeoutMs: 20_000 });
  assert.equal(second.code, 2, second.stderr);
  assert.equal(
    second.stderr,
    `fleetprune: --data-dir ${dataDir} is in use by another fleetprune server (process ${first.child.pid}); stop it or choose another --data-dir (only servers on PostgreSQL share a data dir)\n`,
  );
  assert.equal(second.stdout, '');
  // The first one runs on, and the refused one touched nothing in the data dir.
  assert.equal((await fetch(`${first.baseUrl}/healthz`)).status, 200);
  assert.deepEqual(await snapshot(dataDir), filesBefore);
  const holder = async () => (await readFile(lockFile, 'utf8')).split('\n')[0];
  assert.equal(await holder(), String(first.child.pid));

  // The same data dir by another path (a link; a bind mount alike) is in use, not a copy.
  const linked = join(await tempDir(t), 'linked');
  await symlink(dataDir, linked);
  const onLink = await runCli(['server', '--data-dir', linked, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN }, { timeoutMs: 20_000 });
  assert.equal(onLink.code, 2, onLink.stderr);
  assert.match(onLink.stderr, new RegExp(`^fleetprune: --data-dir ${linked} is in use by another fleetprune server \\(process ${first.child.pid}\\)`));

  // A copy of the running server's data dir (a backup taken while it ran) carries its lock: the
  // refusal says so, rather than call the copy in use.
  const copy = join(await tempDir(t), 'copy');
  await cp(dataDir, copy, { recursive: true });
  const onCopy = await runCli(['server', '--data-dir', copy, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN }, { timeoutMs: 20_000 });
  assert.equal(onCopy.code, 2, onCopy.stderr);
  assert.equal(
    onCopy.stderr,
    `fleetprune: --data-dir ${copy} holds the server.lock of process ${first.child.pid}, a fleetprune server running on ${await realpath(dataDir)}: this data dir is a copy of that server's, its lock copied with it; remove ${join(copy, 'server.lock')} and start again\n`,
  );

  // kill -9 leaves the lock behind; the next start (a supervisor's restart) takes it over.
  await killHard(first);
  assert.equal(await holder(), String(first.child.pid), 'the stale lock is left');
  const restarted = await spawnServer(t, dataDir);
  assert.equal(await holder(), String(restarted.child.pid));
  assert.deepEqual((await api(restarted, '/api/models')).models, []);

  const exited = new Promise<number | null>((resolve) => restarted.child.once('exit', (code) => resolve(code)));
  restarted.child.kill('SIGTERM');
  assert.equal(await exited, 0, restarted.stderr());
  assert.equal(existsSync(lockFile), false, 'a clean stop removes the lock');
  assert.deepEqual((await readdir(dataDir)).filter((name) => name.includes('lock')), [], 'no lock, takeover or temporary file is left');
});

test('a start refused after it locked the data dir (a port in use) removes the lock at once, before its process ends (the demo goes on)', async (t) => {
  const dataDir = await tempDir(t);
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const config = parseServerConfig({ dataDir, host: '127.0.0.1', httpPort: (blocker.address() as AddressInfo).port, grpcPort: 0, mqttPort: 0, adminToken: ADMIN_TOKEN });
  await assert.rejects(startServer(config, { log: createLogger('lock-test', 'silent') }), /--http-port: cannot listen on .*EADDRINUSE/);
  assert.equal(existsSync(join(dataDir, 'server.lock')), false, 'the refused start left its lock');
});

test('servers on PostgreSQL share a data dir (a standby): no lock, both start', async (t) => {
  const dataDir = await tempDir(t);
  const location = await freshStoreLocation(t, 'postgres', dataDir);
  if (!location || location.engine !== 'postgres') return;
  const flags = (node: string) => ['--database-url', location.databaseUrl, ...(location.schema ? ['--database-schema', location.schema] : []), '--node-id', node];
  const leader = await spawnServer(t, dataDir, flags('node-a'));
  const standby = await spawnServer(t, dataDir, flags('node-b'));
  assert.equal((await fetch(`${standby.baseUrl}/healthz`)).status, 200);
  assert.equal(existsSync(join(dataDir, 'server.lock')), false);
  await killHard(standby);
  await killHard(leader);
});
