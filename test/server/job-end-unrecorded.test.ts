import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { JobsRepository } from '../../server/store/repositories/jobs-repository.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

/** The store refuses to record a job's end (`state` succeeded or failed) while `full.on`, as a full disk does. */
function refuseJobEnds(t: import('node:test').TestContext): { on: boolean } {
  const full = { on: false };
  const original = JobsRepository.prototype.update;
  JobsRepository.prototype.update = function (this: JobsRepository, id, changes, at, from) {
    if (full.on && (changes.state === 'failed' || changes.state === 'succeeded')) return Promise.reject(new Error('database or disk is full'));
    return original.call(this, id, changes, at, from);
  };
  t.after(() => {
    JobsRepository.prototype.update = original;
  });
  return full;
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function storedState(server: NonNullable<Awaited<ReturnType<typeof startTestServer>>>, id: string, want: string): Promise<any> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const job = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as any;
    if (job.state === want) return job;
    assert.ok(Date.now() < deadline, `job ${id} stayed ${job.state}, never stored as ${want}: ${JSON.stringify(job)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('a job whose end the store refuses for a while (a full disk) is not left running for ever: watchers get its end, a cancel is refused, and the true end is stored once the store takes writes again', async (t) => {
  const full = refuseJobEnds(t);
  const server = (await startTestServer(t, { config: { maxConcurrentJobs: 1 } }))!;
  const csv = await readFile(IRIS, 'utf8');
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const start = async () => (await (await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } })).json()) as any;

  // A failing worker (it reads the training backend from its environment) whose failure cannot be stored.
  full.on = true;
  process.env.FLEETPRUNE_TF_BACKEND = 'bogus';
  t.after(() => delete process.env.FLEETPRUNE_TF_BACKEND);
  const failing = await start();
  const events = await within(jobs.stream('WatchJob', { id: failing.id }), 60_000, 'the watch never ended: the job stayed running');
  delete process.env.FLEETPRUNE_TF_BACKEND;
  const told = events.at(-1).job;
  assert.equal(told.state, 'failed');
  assert.match(told.error, /^FLEETPRUNE_TF_BACKEND: must be one of/);
  // Not stored yet: cancelling it now would record a false reason; it is refused and changes nothing.
  const cancel = await server.request('POST', `/api/jobs/${failing.id}/cancel`);
  assert.equal(cancel.status, 409, await cancel.clone().text());
  assert.match(((await cancel.json()) as any).error.message, /already finishing|already failed/);
  full.on = false;
  const stored = await storedState(server, failing.id, 'failed');
  assert.match(stored.error, /^FLEETPRUNE_TF_BACKEND: must be one of/, 'its own reason, not a cancel');

  // A job whose success cannot be stored registers nothing either (its models and its end are one
  // transaction): it ends failed, never failed beside registered versions, nor succeeded without them.
  full.on = true;
  const next = await start();
  const ended = (await within(jobs.stream('WatchJob', { id: next.id }), 90_000, 'the watch never ended')).at(-1).job;
  assert.equal(ended.state, 'failed');
  assert.match(ended.error, /database or disk is full/);
  full.on = false;
  await storedState(server, next.id, 'failed');
  assert.equal(await server.server.ctx.store.models.countVersions(), 0);
  // Once the store takes writes, the same job succeeds with both models.
  const again = await start();
  const done = await storedState(server, again.id, 'succeeded');
  assert.equal(done.result.pruned.version, '2');
  assert.equal(await server.server.ctx.store.models.countVersions(), 2);
});
