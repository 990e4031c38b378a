import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { pino } from 'pino';
import { ServiceError } from '../../server/app/service-error.ts';
import { readJobData } from '../../server/jobs/job-data.ts';
import { withoutServerPaths } from '../../server/jobs/job-work-space.ts';
import { REST_PRUNE_FIELDS } from '../../server/jobs/prune-job-request.ts';
import { startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const TINY_OPTIONS = { units: 8, layers: 1, epochs: 5, retrainEpochs: 1, epsilons: [0.2], baselines: false, seed: 1 };

test('a job error names the server directories by the option that set them, never by their path', () => {
  const places = [
    ['/srv/fleet/data', '<--data-dir>'],
    ['/srv/fleet/data/jobs/vm', '<--data-dir>/jobs/vm'],
    ['/mnt/datasets/', '<--data-root>'],
    ['data', 'never replaced: relative'],
    ['/', 'never replaced: the root'],
    [undefined, 'never replaced: unset'],
  ] as const;
  assert.equal(
    withoutServerPaths("cannot write artifact to /srv/fleet/data/jobs/vm/job-1/artifact: EACCES: permission denied, mkdir '/srv/fleet/data/jobs/vm/job-1/artifact.tmp-ab'", places),
    "cannot write artifact to <--data-dir>/jobs/vm/job-1/artifact: EACCES: permission denied, mkdir '<--data-dir>/jobs/vm/job-1/artifact.tmp-ab'",
  );
  assert.equal(withoutServerPaths('internal error: the data in /mnt/datasets/a.csv moved', places), 'internal error: the data in <--data-root>/a.csv moved');
  assert.equal(withoutServerPaths('the data has 3 rows', places), 'the data has 3 rows', 'a message without paths is as it was');
});

test('a job whose --data-root has gone is refused without naming the server path', async () => {
  const gone = '/srv/secret-datasets/customer-acme-fleetprune-test';
  await assert.rejects(
    readJobData({ path: 'a.csv' }, gone, 1024, REST_PRUNE_FIELDS),
    (error: unknown) => error instanceof ServiceError && error.code === 'bad_request' && !error.message.includes(gone) && /--data-root does not exist/.test(error.message),
  );
});

test("a job that cannot write its artifact fails with an error that names the failure, not the server's path (a viewer reads it); the log has the full message", { timeout: 180_000 }, async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const server = (await startTestServer(t, { config: { nodeId: 'node-a' }, start: { log } }))!;
  if (!server) return;
  const { token: viewer } = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'v' } })).json()) as { token: string };

  // As soon as a job's work directory appears, its artifact's path is taken by a plain file (as a
  // directory of someone else's, or an unwritable disk, would be): the write after training fails.
  const jobsDir = join(server.dataDir, 'jobs', 'node-a');
  await mkdir(jobsDir, { recursive: true });
  const watcher = watch(jobsDir, (_event, name) => {
    if (name?.startsWith('job-')) void writeFile(join(jobsDir, name, 'artifact'), 'not a directory').catch(() => {});
  });
  t.after(() => watcher.close());

  const csv = await readFile(IRIS, 'utf8');
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options: TINY_OPTIONS } });
  assert.equal(started.status, 202, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  let job: { state: string; error: string | null } | undefined;
  for (const deadline = Date.now() + 150_000; ; await new Promise((resolve) => setTimeout(resolve, 200))) {
    job = (await (await server.request('GET', `/api/jobs/${id}`, { token: viewer })).json()) as { state: string; error: string | null };
    if (job.state !== 'queued' && job.state !== 'running') break;
    assert.ok(Date.now() < deadline, `job ${id} never ended: ${JSON.stringify(job)}`);
  }
  assert.equal(job.state, 'failed', JSON.stringify(job));
  assert.equal(job.error, `cannot write artifact to <--data-dir>/jobs/node-a/${id}/artifact: it exists and is not a directory`);
  const listed = JSON.stringify(await (await server.request('GET', '/api/jobs', { token: viewer })).json());
  assert.equal(listed.includes(server.dataDir), false, `the job list names no server path: ${listed}`);
  const logged = lines.find((line) => line.job === id && line.msg === 'pruning job failed');
  assert.equal(logged?.error, `cannot write artifact to ${join(jobsDir, id, 'artifact')}: it exists and is not a directory`, `the log has the full message: ${JSON.stringify(lines.filter((line) => line.job === id))}`);
});
