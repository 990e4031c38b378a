import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { STORE_ENGINES } from './helpers/store-engines.ts';
import { startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const TINY_OPTIONS = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

async function until(condition: () => boolean, what: string, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `${what} within ${ms / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const engine of STORE_ENGINES) {
  describe(`job shutdown on ${engine}`, () => {
    test('a server stopping while a job registers its models lets it finish: the job ends succeeded with the versions it registered, never failed beside them', async (t) => {
      const server = await startTestServer(t, { engine });
      if (!server) return;
      const { registry, jobs, store } = server.server.ctx;
      // Hold the job inside its registration transaction until the shutdown has begun.
      let entered = false;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const registerIn = registry.registerIn.bind(registry);
      registry.registerIn = async (tx, input) => {
        entered = true;
        await gate;
        return registerIn(tx, input);
      };
      const csv = await readFile(IRIS, 'utf8');
      const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } });
      assert.equal(started.status, 202);
      const { id } = (await started.json()) as { id: string };
      await until(() => entered, 'the job reaches its registration');

      const stopped = jobs.stop();
      release();
      await stopped;

      const job = (await store.jobs.get(id))!;
      const versions = await store.models.countVersions();
      assert.deepEqual([job.state, job.error, versions], ['succeeded', null, 2]);
      assert.deepEqual((job.result as any).pruned.version, '2');
    });
  });
}
