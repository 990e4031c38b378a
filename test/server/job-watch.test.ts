import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JobEvents } from '../../server/jobs/job-events.ts';
import { watchJob, type JobWatchSource } from '../../server/jobs/job-watch.ts';
import type { JobRecord } from '../../server/store/repositories/jobs-repository.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function job(node: string, state: JobRecord['state'], epoch: number): JobRecord {
  return { id: 'j1', kind: 'prune', state, request: {}, progress: { phase: 'train', done: epoch, total: 10 }, result: null, error: null, createdAt: '', updatedAt: '', createdBy: 't', node };
}

test('a watch of a job of this server follows its live events; the store (behind them) only adds an end written elsewhere', async () => {
  const events = new JobEvents();
  let stored = job('me', 'running', 1);
  const source: JobWatchSource = { events, node: 'me', localPollMs: 20, get: async () => structuredClone(stored) };
  const seen: string[] = [];
  let ended = false;
  const stop = await watchJob(source, 'j1', (event) => seen.push(event.type === 'progress' ? `progress ${(event.progress as { done: number }).done}` : `state ${event.job.state}`), () => (ended = true));
  stored = job('me', 'running', 2); // saved, and already sent live
  events.emit({ type: 'progress', jobId: 'j1', progress: { phase: 'train', done: 2, total: 10 } as never });
  events.emit({ type: 'progress', jobId: 'j1', progress: { phase: 'train', done: 3, total: 10 } as never }); // live, not saved yet
  await sleep(80); // several polls
  assert.deepEqual(seen, ['state running', 'progress 2', 'progress 3'], 'the polls add nothing the live events said (and never go back)');
  stored = { ...job('me', 'failed', 3), error: 'presumed gone' }; // another server's lease reaper
  await sleep(80);
  assert.deepEqual(seen.at(-1), 'state failed');
  assert.equal(ended, true);
  stop();
});
