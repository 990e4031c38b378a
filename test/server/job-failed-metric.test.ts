import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStore } from '../../server/store/open-store.ts';
import type { JobRecord } from '../../server/store/repositories/jobs-repository.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { startTestServer, type TestServer } from './helpers/test-server.ts';

// fleetprune_jobs_finished_total{state="failed"} counted only the jobs a run failed, not those a
// restart failed (left unfinished by a crash) or another server's lease reaper failed.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const unfinishedJob = (id: string, node: string): JobRecord => ({
  id,
  kind: 'prune',
  state: 'running',
  request: {},
  progress: null,
  result: null,
  error: null,
  createdAt: new Date().toISOString(),
  updatedAt: new Date().toISOString(),
  createdBy: 'token:test',
  node,
});

async function failedCount(server: TestServer): Promise<number> {
  const text = await (await server.request('GET', '/metrics')).text();
  return Number(/^fleetprune_jobs_finished_total\{state="failed"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

test('fleetprune_jobs_finished_total{state="failed"} counts the jobs a restart fails (left running by a crashed server, SQLite)', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-metric-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true, maxRetries: 3 }));
  // What a server killed with -9 leaves: its jobs running, one of them under an older node id.
  const store = await openStore({ engine: 'sqlite', dataDir });
  await store.jobs.insert(unfinishedJob('job-crashed-1', 'node-m'));
  await store.jobs.insert(unfinishedJob('job-crashed-2', 'old-name'));
  await store.close();
  const server = (await startTestServer(t, { config: { dataDir, nodeId: 'node-m' } }))!;
  assert.equal((await server.server.ctx.store.jobs.get('job-crashed-1'))!.state, 'failed');
  assert.equal(await failedCount(server), 2);
});

test('fleetprune_jobs_finished_total{state="failed"} counts the jobs the lease reaper fails (their server gone, PostgreSQL)', async (t) => {
  const server = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-reaper' }, start: { jobLeases: { renewMs: 100, staleSeconds: 60 } } });
  if (!server) return;
  const { store } = server.server.ctx;
  await store.jobs.insert(unfinishedJob('job-gone', 'decommissioned'));
  await store.engine.run("UPDATE jobs SET renewed_at = renewed_at - 3600 WHERE id = 'job-gone'"); // unrenewed for an hour
  for (let i = 0; i < 100 && (await store.jobs.get('job-gone'))!.state !== 'failed'; i++) await sleep(50);
  assert.equal((await store.jobs.get('job-gone'))!.state, 'failed', 'the reaper failed the job');
  assert.equal(await failedCount(server), 1);
});

// The series first appeared at 1 with the first failed job: to Prometheus that is no increase, and
// FleetprunePruningJobsFailed (increase over 1h) missed the first failure after each start.
test('fleetprune_jobs_finished_total is exported at 0 for every final state from the start, before any job ends', async (t) => {
  const server = (await startTestServer(t))!;
  const text = await (await server.request('GET', '/metrics')).text();
  for (const state of ['succeeded', 'failed', 'cancelled']) assert.match(text, new RegExp(`^fleetprune_jobs_finished_total\\{state="${state}"\\} 0$`, 'm'), state);
});
