import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { fileURLToPath } from 'node:url';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('PostgreSQL: a second server started with a live one\'s --node-id exits 2 in one line and leaves the live one\'s running job and its work files alone; once the first stops, the node id is free', async (t) => {
  const first = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-dup' } });
  if (!first) return;
  const { databaseUrl, databaseSchema } = first.server.ctx.config;
  const csv = await readFile(IRIS, 'utf8');
  // Long enough to be still training when the second start comes: up to 10,000 epochs, patience 1,000.
  const options = { units: 16, layers: 2, epochs: 10_000, patience: 1000, epsilons: [0.2], baselines: false, seed: 1 };
  const started = await first.request('POST', '/api/jobs/prune', { json: { name: 'iris', label: 'species', data: { csv }, options } });
  assert.equal(started.status, 202, await started.clone().text());
  const job = (await started.json()) as any;
  const workDir = join(first.dataDir, 'jobs', 'node-dup', job.id);
  const state = async () => ((await (await first.request('GET', `/api/jobs/${job.id}`)).json()) as any).state;
  for (let i = 0; i < 300 && !((await state()) === 'running' && existsSync(workDir)); i++) await sleep(50);
  assert.equal(await state(), 'running', 'the job runs on the first server');

  // As a mistaken second start on the same host: same data dir, database, node id and HTTP port.
  const second = await runCli(
    ['server', '--data-dir', first.dataDir, '--database-url', databaseUrl!, '--database-schema', databaseSchema!, '--node-id', 'node-dup',
      '--host', '127.0.0.1', '--http-port', String(first.server.port('http')), '--grpc-port', '0', '--mqtt-port', '0'],
    { FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN, FLEETPRUNE_LOG_LEVEL: 'warn' },
    { timeoutMs: 30_000 },
  );
  assert.equal(second.code, 2, second.stderr);
  assert.equal(
    second.stderr,
    'fleetprune: --node-id node-dup is in use by a live server (another fleetprune server on this database); give each server its own --node-id\n',
  );
  const after = (await (await first.request('GET', `/api/jobs/${job.id}`)).json()) as any;
  assert.equal(after.state, 'running', `the live server's job was left alone: ${after.error}`);
  assert.equal(existsSync(workDir), true, "the live server's job work directory is still there");
  assert.equal(first.server.ctx.jobs.running, 1, 'the first server still runs the job');

  const cancel = await first.request('POST', `/api/jobs/${job.id}/cancel`);
  assert.equal(cancel.status, 200, await cancel.text());
  await first.server.close();
  // The node id is released with the server: a restart takes it.
  const restarted = await startTestServer(t, { engine: 'postgres', config: { dataDir: first.dataDir, databaseUrl, databaseSchema, nodeId: 'node-dup' } });
  assert.equal((await restarted!.request('GET', '/healthz')).status, 200);
});

test('PostgreSQL: a server whose node-id lock session is ended (a database restart, a cut) takes the lock again, and a second start with its --node-id is still refused', async (t) => {
  const server = await startTestServer(t, { engine: 'postgres', config: { nodeId: 'node-lost' } });
  if (!server) return;
  const { databaseUrl, databaseSchema } = server.server.ctx.config;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  t.after(() => admin.end());
  // The backend holding this node's advisory lock (a bigint key: classid its high half, objid its low half).
  const holder = async (): Promise<number | undefined> => {
    const { rows } = await admin.query(
      `WITH k AS (SELECT hashtextextended('fleetprune-node:node-lost@' || $1::text, 0) AS key)
       SELECT l.pid FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
         AND l.classid::bigint = (k.key >> 32) & 4294967295 AND l.objid::bigint = k.key & 4294967295`,
      [databaseSchema],
    );
    return rows[0]?.pid;
  };
  const first = await holder();
  assert.equal(typeof first, 'number', 'the server holds its node lock');
  await admin.query('SELECT pg_terminate_backend($1)', [first]);
  let again: number | undefined;
  for (let i = 0; i < 200 && ((again = await holder()) === undefined || again === first); i++) await sleep(50);
  assert.equal(typeof again, 'number', 'the lock was taken again');
  assert.notEqual(again, first);

  const second = await runCli(
    ['server', '--data-dir', server.dataDir, '--database-url', databaseUrl!, '--database-schema', databaseSchema!, '--node-id', 'node-lost', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'],
    { FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN, FLEETPRUNE_LOG_LEVEL: 'warn' },
    { timeoutMs: 30_000 },
  );
  assert.equal(second.code, 2, second.stderr);
  assert.match(second.stderr, /^fleetprune: --node-id node-lost is in use by a live server/);
});
