import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { bindReadOnly, mountTmpfs } from '../helpers/tmpfs.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const FULL = /^the server's storage is full \((ENOSPC|SQLITE_FULL)\), so the request was not completed\. Free space under its --data-dir \(or on its database's disk\) and try again$/;

test("a server whose data dir is full refuses writes as 507 insufficient_storage (gRPC RESOURCE_EXHAUSTED), saying so to the caller and in its log, and stores nothing", async (t) => {
  const mount = await mountTmpfs(t, 'server-full', '16m');
  if (!mount) return t.skip('cannot mount a tmpfs here (needs root)');
  const { logger, lines } = recordingLogger();
  const server = (await startTestServer(t, { config: { dataDir: mount }, start: { log: logger } }))!;
  const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  t.after(() => tokens.close());
  const count = async () => ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens.length;
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'before' } })).status, 201);
  const before = await count();

  // Every block the tmpfs has left, taken.
  await writeFile(join(mount, 'filler'), Buffer.alloc(32 * 1024 * 1024)).catch(() => {});

  const blob = randomBytes(256 * 1024);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  const put = await server.request('PUT', `/api/blobs/${sha256}`, { body: blob, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 507);
  const refusal = ((await put.json()) as any).error;
  assert.equal(refusal.code, 'insufficient_storage');
  assert.match(refusal.message, FULL);
  assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 404, 'no blob stored');

  // A store write: refused the same way over gRPC (or, where the database still had room, made).
  let made = 0;
  for (let i = 0; i < 200; i++) {
    try {
      await tokens.call('CreateToken', { role: 'viewer', label: `full-${i}` });
      made++;
    } catch (error: any) {
      assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.details);
      assert.match(error.details, FULL);
      break;
    }
  }
  assert.ok(made < 200, 'the store took 200 tokens on a full disk');
  assert.equal(await count(), before + made, 'the refused token was not made');
  assert.ok(lines.some((line) => line.level === 50 && /storage cannot take the write/.test(line.msg) && /ENOSPC|SQLITE_FULL/.test(JSON.stringify(line))), 'the server log says so at error level');
  assert.ok(!lines.some((line) => line.msg === 'request failed' || line.msg === 'gRPC call failed'), 'not logged as an internal failure');
});

test('a server whose blob directory turned read-only refuses an upload as 507 naming EROFS, not as an internal error, and stores nothing', async (t) => {
  const { logger, lines } = recordingLogger();
  const server = (await startTestServer(t, { start: { log: logger } }))!;
  // The blob directory bound onto itself read-only, as a disk remounted read-only after errors is.
  const blobs = join(server.dataDir, 'blobs');
  if (!(await bindReadOnly(t, blobs))) return t.skip('cannot bind-mount here (needs root)');
  const blob = randomBytes(64 * 1024);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  const put = await server.request('PUT', `/api/blobs/${sha256}`, { body: blob, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 507);
  const refusal = ((await put.json()) as any).error;
  assert.equal(refusal.code, 'insufficient_storage');
  assert.equal(refusal.message, 'the server cannot write to its storage (EROFS), so the request was not completed. Make its --data-dir writable (the server log names the file) and try again');
  assert.ok(lines.some((line) => line.level === 50 && /storage cannot take the write/.test(line.msg) && JSON.stringify(line).includes(blobs)), 'the server log names the file');
  assert.ok(!lines.some((line) => line.msg === 'request failed'), 'not logged as an internal failure');
  assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 404, 'no blob stored');
});

test('a pruning job whose models the blob store cannot take (read-only) fails saying so, as a push does, not as an internal error; nothing is registered', async (t) => {
  const { logger, lines } = recordingLogger();
  const server = (await startTestServer(t, { start: { log: logger } }))!;
  const blobs = join(server.dataDir, 'blobs');
  if (!(await bindReadOnly(t, blobs))) return t.skip('cannot bind-mount here (needs root)');
  const csv = await readFile(fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url)), 'utf8');
  const options = { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options } });
  assert.equal(started.status, 202);
  const { id } = (await started.json()) as { id: string };
  const job = await jobEnd(server, id);
  assert.equal(job.state, 'failed');
  assert.equal(job.error, 'the server cannot write to its storage (EROFS), so the request was not completed. Make its --data-dir writable (the server log names the file) and try again');
  assert.deepEqual(((await (await server.request('GET', '/api/models')).json()) as { models: unknown[] }).models, []);
  assert.ok(!lines.some((line) => line.level >= 50 && line.msg === 'pruning job failed'), 'not logged as an internal failure');
});

test('a pruning job whose worker cannot write its models under the job directory (turned read-only mid-training) fails saying so, not as an internal error', async (t) => {
  const { logger, lines } = recordingLogger();
  const server = (await startTestServer(t, { start: { log: logger } }))!;
  const jobs = join(server.dataDir, 'jobs');
  const csv = await readFile(fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url)), 'utf8');
  const options = { units: 16, layers: 2, epochs: 400, patience: 400, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };
  const started = await server.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options } });
  assert.equal(started.status, 202);
  const { id } = (await started.json()) as { id: string };
  const read = async () => (await (await server.request('GET', `/api/jobs/${id}`)).json()) as { state: string; error?: string; progress?: { phase?: string } };
  let job = await read();
  const deadline = Date.now() + 120_000;
  while (job.progress?.phase !== 'train' && job.state !== 'failed' && job.state !== 'succeeded' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    job = await read();
  }
  assert.equal(job.progress?.phase, 'train', JSON.stringify(job));
  // Its work directory exists by now: the jobs directory turns read-only under it.
  if (!(await bindReadOnly(t, jobs))) return t.skip('cannot bind-mount here (needs root)');
  job = await jobEnd(server, id);
  assert.equal(job.state, 'failed');
  assert.equal(job.error, 'the server cannot write to its storage (EROFS), so the request was not completed. Make its --data-dir writable (the server log names the file) and try again');
  assert.ok(!lines.some((line) => line.level >= 50 && line.msg === 'pruning job failed'), 'not logged as an internal failure');
});

/** The job once it has ended (failed, succeeded or cancelled), polled for up to two minutes. */
async function jobEnd(server: { request: (method: string, path: string) => Promise<Response> }, id: string): Promise<{ state: string; error?: string }> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const job = (await (await server.request('GET', `/api/jobs/${id}`)).json()) as { state: string; error?: string };
    if (['failed', 'succeeded', 'cancelled'].includes(job.state) || Date.now() > deadline) return job;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
