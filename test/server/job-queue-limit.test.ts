import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { STORE_ENGINES } from './helpers/store-engines.ts';
import { startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
// Still training long after every submission is answered: up to 10,000 epochs with patience 1,000.
const LONG = { units: 16, layers: 2, epochs: 10_000, patience: 1000, retrainEpochs: 0, epsilons: [0.2], baselines: false, seed: 1 };

for (const engine of STORE_ENGINES) {
  describe(`job queue on ${engine}`, () => {
    test('--max-queued-jobs holds for submissions arriving at once: one runs, two wait, the rest are refused (429) and not stored', async (t) => {
      const server = await startTestServer(t, { engine, config: { maxConcurrentJobs: 1, maxQueuedJobs: 2 } });
      if (!server) return;
      const csv = await readFile(IRIS, 'utf8');
      const responses = await Promise.all(
        Array.from({ length: 12 }, () => server.request('POST', '/api/jobs/prune', { json: { name: 'burst', label: 'species', data: { csv }, options: LONG } })),
      );
      const jobs = (((await (await server.request('GET', '/api/jobs')).json()) as any).jobs as any[]);
      assert.deepEqual(
        responses.map((response) => response.status).sort(),
        [202, 202, 202, ...Array<number>(9).fill(429)],
        'one job for the worker and two for the queue are accepted',
      );
      assert.equal(jobs.length, 3, 'the refused submissions stored nothing');
      assert.ok(jobs.filter((job) => job.state === 'queued').length <= 2, JSON.stringify(jobs.map((job) => job.state)));
    });
  });
}
