import assert from 'node:assert/strict';
import * as fsPromises from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RESTART_REASON } from '../../server/jobs/job-service.ts';
import type { JobRecord } from '../../server/store/repositories/jobs-repository.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { openStore } from '../../server/store/open-store.ts';
import { STORE_ENGINES, freshStoreLocation } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';
import { holdFirstBlobPut } from './helpers/hold-blob-put.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a failure after `ms` (its timer cleared, so it never holds the test process open). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function startJob(server: TestServer, name: string): Promise<any> {
  const csv = await readFile(IRIS, 'utf8');
  const response = await server.request('POST', '/api/jobs/prune', { json: { name, label: 'species', data: { csv }, options: TINY_OPTIONS } });
  assert.equal(response.status, 202, await response.clone().text());
  return response.json();
}

/** The SSE stream's events, read until the server ends it (a timeout fails instead of hanging). */
async function watchEvents(server: TestServer, id: string, ms = 90_000): Promise<{ event: string; data: any }[]> {
  const response = await fetch(`${server.baseUrl}/api/jobs/${id}/events`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(ms) });
  const text = await response.text().catch((error) => assert.fail(`the event stream of job ${id} did not end within ${ms / 1000} s: ${error}`));
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => ({ event: /^event: (.*)$/m.exec(block)![1]!, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) }));
}

const unfinishedJob = (id: string, node: string, state: 'queued' | 'running'): JobRecord => ({
  id,
  kind: 'prune',
  state,
  request: {},
  progress: null,
  result: null,
  error: null,
  createdAt: new Date().toISOString(),
  updatedAt: new Date().toISOString(),
  createdBy: 'token:test',
  node,
});

test('--max-concurrent-jobs 1 holds when jobs are submitted at once: one worker, one running job at any moment', async (t) => {
  const server = (await startTestServer(t, { config: { maxConcurrentJobs: 1, maxQueuedJobs: 4 } }))!;
  const { jobs, store } = server.server.ctx;
  const ids = (await Promise.all([1, 2, 3].map((i) => startJob(server, `concurrent${i}`)))).map((job) => job.id as string);
  let maxWorkers = 0;
  let maxRunning = 0;
  const deadline = Date.now() + 180_000;
  for (;;) {
    maxWorkers = Math.max(maxWorkers, jobs.running);
    const stored = (await store.jobs.list()).filter((job) => ids.includes(job.id));
    maxRunning = Math.max(maxRunning, stored.filter((job) => job.state === 'running').length);
    if (stored.every((job) => job.state === 'succeeded' || job.state === 'failed')) {
      assert.deepEqual(stored.map((job) => [job.state, job.error]), ids.map(() => ['succeeded', null]));
      break;
    }
    assert.ok(Date.now() < deadline, `the jobs did not finish: ${JSON.stringify(stored.map((job) => job.state))}`);
    await sleep(50); // a second running job would overlap for seconds (each runs about 2 s)
  }
  assert.equal(maxWorkers, 1, 'workers at once (fleetprune_jobs_running)');
  assert.equal(maxRunning, 1, 'jobs stored as running at once');
});

for (const engine of STORE_ENGINES) {
  describe(`jobs on ${engine}`, () => {
    test('the store counts every job, beyond the newest it lists (GET /api/jobs `total`)', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      assert.equal(await store.jobs.count(), 0);
      for (const n of [1, 2, 3]) {
        const at = `2026-01-01T00:0${n}:00.000Z`;
        await store.jobs.insert({ id: `job-${n}`, kind: 'prune', state: 'failed', request: {}, progress: null, result: null, error: 'x', createdAt: at, updatedAt: at, createdBy: 'test', node: null });
      }
      assert.deepEqual([(await store.jobs.list(2)).map((job) => job.id), await store.jobs.count()], [['job-3', 'job-2'], 3]);
    });

    test('a cancel after training, while the artifacts are being stored, wins: the job ends cancelled, nothing is registered, the cancel is audited', async (t) => {
      const server = await startTestServer(t, { engine });
      if (!server) return;
      const { blobs, store } = server.server.ctx;
      // The real blob store, held a moment on the job's first file (as a large artifact's copy would be).
      const inStorage = holdFirstBlobPut(blobs);
      const job = await startJob(server, 'iris');
      await inStorage;
      const cancel = await server.request('POST', `/api/jobs/${job.id}/cancel`);
      const answer = (await cancel.json()) as any;
      assert.equal(cancel.status, 200, JSON.stringify(answer));
      assert.equal(answer.state, 'cancelled');
      assert.match(answer.error, /^cancelled by token:/);
      assert.equal(await store.models.countVersions(), 0, 'nothing was registered');
      const audit = (await (await server.request('GET', '/api/audit')).json()) as any;
      assert.deepEqual(audit.entries.filter((entry: any) => entry.action === 'job.cancel').map((entry: any) => [entry.target, entry.details]), [[`job:${job.id}`, { state: 'running' }]]);
    });

    test('a cancel while the job prepares its work space ends it at once, before any training (it found no worker to stop and waited for the whole training)', async (t) => {
      const server = await startTestServer(t, { engine });
      if (!server) return;
      // The job's disk check (statfs of its work directory) held until the cancel is on its way.
      const fsp = createRequire(import.meta.url)('node:fs/promises') as typeof fsPromises;
      const statfs = fsp.statfs;
      let reached!: () => void;
      const preparing = new Promise<void>((resolve) => (reached = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      fsp.statfs = (async (...args: Parameters<typeof statfs>) => {
        reached();
        await released;
        return statfs(...args);
      }) as typeof statfs;
      syncBuiltinESMExports();
      t.after(() => {
        fsp.statfs = statfs;
        syncBuiltinESMExports();
      });
      const job = await startJob(server, 'iris');
      await preparing;
      const cancel = server.request('POST', `/api/jobs/${job.id}/cancel`);
      // The cancel has reached the service (its audit entry waits for the job's end; give it a moment).
      await sleep(200);
      release();
      const answer = (await (await cancel).json()) as any;
      assert.equal(answer.state, 'cancelled', JSON.stringify(answer));
      const stored = (await server.server.ctx.store.jobs.get(job.id))!;
      assert.equal(stored.progress, null, `no training ran: ${JSON.stringify(stored.progress)}`);
    });

    test('upgrading (migration jobs:4): a job a cancel ended failed, before the cancelled state, is cancelled; real failures stay failed', async (t) => {
      const before = await startTestServer(t, { engine });
      if (!before) return;
      const { store } = before.server.ctx;
      const at = '2026-01-01T00:00:00.000Z';
      const ended = (id: string, state: 'failed' | 'succeeded', error: string | null): JobRecord => ({ ...unfinishedJob(id, 'old-host', 'running'), state, error, updatedAt: at });
      const cancelAudit = (id: string, actor: string) => store.audit.append({ at, actor, action: 'job.cancel', target: `job:${id}`, details: { state: 'running' } });
      // What a cancel wrote before: failed with its message, and its audit entry.
      await store.jobs.insert(ended('job-cancelled', 'failed', 'cancelled by token:abc'));
      await cancelAudit('job-cancelled', 'token:abc');
      // A failure whose message only reads like a cancel (no cancel audited), a failure, a success.
      await store.jobs.insert(ended('job-lookalike', 'failed', 'cancelled by token:abc'));
      await store.jobs.insert(ended('job-crashed', 'failed', 'internal error: boom'));
      await store.jobs.insert(ended('job-done', 'succeeded', null));
      // A cancel audited for a job whose error is not that cancel's (it did not end the job).
      await store.jobs.insert(ended('job-restarted', 'failed', RESTART_REASON));
      await cancelAudit('job-restarted', 'token:abc');
      await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'jobs' AND version = 4");
      await before.server.close();

      const { databaseUrl, databaseSchema } = before.server.ctx.config;
      const after = (await startTestServer(t, { engine, config: engine === 'sqlite' ? { dataDir: before.dataDir } : { databaseUrl, databaseSchema } }))!;
      const states = Object.fromEntries(((await (await after.request('GET', '/api/jobs')).json()) as any).jobs.map((job: any) => [job.id, [job.state, job.error, job.updatedAt]]));
      assert.deepEqual(states, {
        'job-cancelled': ['cancelled', 'cancelled by token:abc', at],
        'job-lookalike': ['failed', 'cancelled by token:abc', at],
        'job-crashed': ['failed', 'internal error: boom', at],
        'job-done': ['succeeded', null, at],
        'job-restarted': ['failed', RESTART_REASON, at],
      });
    });
  });
}

// PostgreSQL only: SQLite's registration transaction holds the whole database, so a cancel there
// can only be read after it, when the job has already succeeded.
test('a cancel while the job registers its models (PostgreSQL) is refused (409), registers as usual, and is not audited', async (t) => {
  const server = await startTestServer(t, { engine: 'postgres' });
  if (!server) return;
  const { registry, store } = server.server.ctx;
  // The real registry, held a moment in its first registration (as a large artifact's would be).
  const registerIn = registry.registerIn.bind(registry);
  let registering!: () => void;
  const inRegistration = new Promise<void>((resolve) => (registering = resolve));
  registry.registerIn = async (tx, input) => {
    registering();
    await sleep(500);
    return registerIn(tx, input);
  };
  const job = await startJob(server, 'iris');
  await inRegistration;
  const cancel = await server.request('POST', `/api/jobs/${job.id}/cancel`);
  const answer = (await cancel.json()) as any;
  assert.equal(cancel.status, 409, JSON.stringify(answer));
  assert.equal(answer.error.message, `job ${job.id} is already finishing; too late to cancel`);

  const finished = (await watchEvents(server, job.id)).at(-1)!.data;
  assert.equal(finished.state, 'succeeded');
  assert.equal(await store.models.countVersions(), 2, 'both models were registered');
  const audit = (await (await server.request('GET', '/api/audit')).json()) as any;
  assert.deepEqual(audit.entries.filter((entry: any) => entry.action === 'job.cancel'), [], 'no cancel was audited');
});

test('SQLite: a restarted server fails the jobs left unfinished under another node id (a renamed host), so they can be cancelled no more', async (t) => {
  const before = (await startTestServer(t, { config: { nodeId: 'old-host' } }))!;
  await before.server.ctx.store.jobs.insert(unfinishedJob('job-renamed-1', 'renamed-host', 'running'));
  await before.server.ctx.store.jobs.insert(unfinishedJob('job-renamed-2', 'other-node', 'queued'));
  await before.server.close();

  const after = (await startTestServer(t, { config: { dataDir: before.dataDir, nodeId: 'new-host' } }))!;
  for (const [id, node] of [['job-renamed-1', 'renamed-host'], ['job-renamed-2', 'other-node']] as const) {
    const job = (await (await after.request('GET', `/api/jobs/${id}`)).json()) as any;
    assert.equal(job.state, 'failed', id);
    assert.equal(job.error, `${RESTART_REASON} (it ran as node ${node}; the server is now node new-host)`);
    const cancel = await after.request('POST', `/api/jobs/${id}/cancel`);
    assert.equal(cancel.status, 409);
    assert.equal(((await cancel.json()) as any).error.message, `job ${id} already failed; nothing to cancel`);
  }
});

test('two servers on one PostgreSQL database: a watcher on the other server sees the job run and finish (SSE and gRPC)', async (t) => {
  const a = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-a' } });
  if (!a) return;
  const { databaseUrl, databaseSchema } = a.server.ctx.config;
  const b = (await startTestServer(t, { engine: 'postgres', config: { databaseUrl, databaseSchema, nodeId: 'node-b' } }))!;
  const job = await startJob(a, 'iris');
  assert.equal(job.node, 'node-a');
  const jobs = grpcClient(b.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const [sse, grpc] = await Promise.all([
    watchEvents(b, job.id),
    within(jobs.stream('WatchJob', { id: job.id }), 90_000, 'WatchJob on the other server'),
  ]);
  const states = sse.filter((event) => event.event === 'state').map((event) => event.data.state);
  assert.equal(states.at(-1), 'succeeded', JSON.stringify(states));
  assert.ok(states.includes('running') || sse.some((event) => event.event === 'progress'), `saw the job run: ${JSON.stringify(sse.map((event) => event.event))}`);
  assert.equal(grpc.at(-1).job.state, 'succeeded');
});

test('PostgreSQL: the unfinished jobs of a server that stopped renewing their leases (gone for good) are failed by another; live and pre-lease jobs are left alone', async (t) => {
  const leases = { renewMs: 200, staleSeconds: 2 };
  const a = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-a' }, start: { jobLeases: leases } });
  if (!a) return;
  const { databaseUrl, databaseSchema } = a.server.ctx.config;
  const b = (await startTestServer(t, { engine: 'postgres', config: { databaseUrl, databaseSchema, nodeId: 'node-b' }, start: { jobLeases: leases } }))!;
  const { store } = a.server.ctx;
  await store.jobs.insert(unfinishedJob('job-gone-1', 'decommissioned', 'running'));
  await store.jobs.insert(unfinishedJob('job-gone-2', 'decommissioned', 'queued'));
  await store.jobs.insert(unfinishedJob('job-live', 'node-b', 'running')); // node-b renews it
  await store.jobs.insert(unfinishedJob('job-pre-lease', 'old-version', 'running'));
  await store.engine.run("UPDATE jobs SET renewed_at = NULL WHERE id = 'job-pre-lease'");

  // Before its lease is stale, the gone server's job is only pointed at, not failed.
  const early = await a.request('POST', '/api/jobs/job-gone-1/cancel');
  assert.equal(early.status, 503);
  assert.match(((await early.json()) as any).error.message, /runs on server decommissioned; .* fail on their own once unrenewed for 2 s/);

  const watched = watchEvents(b, 'job-gone-1', 20_000);
  for (let i = 0; i < 100 && (await store.jobs.get('job-gone-2'))!.state !== 'failed'; i++) await sleep(100);
  for (const id of ['job-gone-1', 'job-gone-2']) {
    const job = (await store.jobs.get(id))!;
    assert.equal(job.state, 'failed', id);
    assert.match(job.error!, /^its server \(node decommissioned\) stopped renewing the job for over 2 s and is presumed gone; failed by node node-[ab]$/);
  }
  assert.equal((await watched).at(-1)!.data.state, 'failed', 'a watcher of the abandoned job sees it end');
  await sleep(2500); // more than a lease's staleness: node-b's renewals keep its job alive
  assert.equal((await store.jobs.get('job-live'))!.state, 'running');
  assert.equal((await store.jobs.get('job-pre-lease'))!.state, 'running', 'a job without a lease is left to its own server');
});

test('PostgreSQL: a job failed as abandoned while its server was cut off registers nothing when its run comes back', async (t) => {
  const server = await startTestServer(t, { engine: 'postgres' });
  if (!server) return;
  const { store } = server.server.ctx;
  const job = await startJob(server, 'iris');
  for (let i = 0; i < 200 && (await store.jobs.get(job.id))!.state !== 'running'; i++) await sleep(25);
  // What another server writes when this one's leases went stale.
  assert.ok(await store.jobs.update(job.id, { state: 'failed', error: 'presumed gone' }, new Date().toISOString(), ['running']));
  for (let i = 0; i < 600 && server.server.ctx.jobs.running > 0; i++) await sleep(100);
  assert.equal(server.server.ctx.jobs.running, 0, 'the run ended');
  assert.equal(await store.models.countVersions(), 0, 'nothing was registered');
  const ended = (await store.jobs.get(job.id))!;
  assert.equal(ended.state, 'failed');
  assert.equal(ended.error, 'presumed gone');
});

test('PostgreSQL: a watcher on the job\'s own server hears the end another server wrote (its lease reaper, while this one was cut off)', async (t) => {
  const server = await startTestServer(t, { engine: 'postgres' });
  if (!server) return;
  const { store } = server.server.ctx;
  const job = await startJob(server, 'iris');
  for (let i = 0; i < 200 && (await store.jobs.get(job.id))!.state !== 'running'; i++) await sleep(25);
  const watched = watchEvents(server, job.id, 30_000);
  await sleep(300);
  // What another server writes when this one's leases went stale.
  assert.ok(await store.jobs.update(job.id, { state: 'failed', error: 'presumed gone' }, new Date().toISOString(), ['running']));
  const events = await watched;
  const states = events.filter((event) => event.event === 'state').map((event) => event.data.state);
  assert.equal(states.at(-1), 'failed', `states seen: ${states.join(', ')}`);
  assert.equal(events.filter((event) => event.event === 'state').at(-1)!.data.error, 'presumed gone');
});
