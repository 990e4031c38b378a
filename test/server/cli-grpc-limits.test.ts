import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact } from './helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { tempDir } from '../helpers/cli.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';

const MiB = 1024 * 1024;

test('jobs prune --data: a CSV over 8 MiB but within --max-body-bytes is accepted over gRPC', async (t) => {
  const maxBodyBytes = 10 * MiB;
  const server = (await startTestServer(t, { config: { maxBodyBytes } }))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  // ~9 MiB: past the old fixed 8 MiB gRPC cap, under --max-body-bytes (as REST accepts it).
  const row = '0.12345678901234,0.98765432109876,0.55555555555555,a\n';
  const rows = Math.ceil((9 * MiB) / row.length);
  const csv = `x,y,z,kind\n${row.repeat(rows - 1)}${'0.5,0.5,0.5,b\n'}`;
  assert.ok(csv.length > 8 * MiB + 64 * 1024 && csv.length < maxBodyBytes, `${csv.length} bytes`);
  const file = join(await tempDir(t), 'big.csv');
  await writeFile(file, csv);

  const started = await runCli(['jobs', 'prune', '--data', file, '--label', 'kind', '--name', 'big', '--detach', ...connection]);
  assert.equal(started.code, 0, started.stderr);
  const id = started.stdout.trim();
  assert.ok(id, started.stdout);
  // Accepted: no need to train on it.
  const cancelled = await runCli(['jobs', 'cancel', id, ...connection]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, new RegExp(`^${id}: cancelled \\(cancelled by `));
  const job = await server.server.ctx.store.jobs.get(id);
  assert.deepEqual((job?.request as { data?: unknown } | undefined)?.data, { csv: `${csv.length} characters` }, 'the whole CSV arrived');
});

test('models list NAME pages through every version, past the 1000 one ListVersions call returns', async (t) => {
  const server = (await startTestServer(t))!;
  const { manifest } = await makeArtifact(t, { seed: 5 });
  // 2,050 versions (more than the 1000 one call may ask for; the last page short), registered straight through the store.
  const count = 2050;
  const versions = await insertAndList(server, 'many', manifest, count);
  assert.equal(versions.length, count);
  assert.deepEqual(versions, Array.from({ length: count }, (_, i) => `many@${i + 1}`));
});

test('models list NAME lists a model whose manifests are large (5,000 features): a page over grpc-js\'s default 4 MiB receive limit is received', async (t) => {
  const server = (await startTestServer(t))!;
  const { manifest } = await makeArtifact(t, { seed: 6 });
  // ~100 kB per manifest: 60 versions make one 6 MiB reply at the CLI's page size.
  const wide = { ...manifest, features: Array.from({ length: 5000 }, (_, i) => `spectrum_band_${i}`) };
  const count = 60;
  const versions = await insertAndList(server, 'wide', wide, count);
  assert.deepEqual(versions, Array.from({ length: count }, (_, i) => `wide@${i + 1}`));
});

test('jobs prune --data: a CSV over the server\'s gRPC message limit is refused naming --data and --max-body-bytes, as a smaller one over the limit is', async (t) => {
  const maxBodyBytes = 1 * MiB;
  const server = (await startTestServer(t, { config: { maxBodyBytes } }))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  // ~9 MiB: past the server's 8 MiB floor for gRPC messages, which refuses it before any handler reads it.
  const row = '0.12345678901234,0.98765432109876,0.55555555555555,a\n';
  const csv = `x,y,z,kind\n${row.repeat(Math.ceil((9 * MiB) / row.length))}0.5,0.5,0.5,b\n`;
  const file = join(await tempDir(t), 'huge.csv');
  await writeFile(file, csv);

  const refused = await runCli(['jobs', 'prune', '--data', file, '--label', 'kind', '--name', 'huge', '--detach', ...connection]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stderr.trim(), `fleetprune: --data: ${file} is ${csv.length} bytes, more than the server accepts (its --max-body-bytes)`);
  assert.deepEqual(await server.server.ctx.store.jobs.list(), [], 'nothing was stored');

  // ~3 MiB: within the transport's 8 MiB, over the limit: the handler refuses the csv, which the CLI names --data.
  const over = join(await tempDir(t), 'over.csv');
  const overCsv = `x,y,z,kind\n${row.repeat(Math.ceil((3 * MiB) / row.length))}0.5,0.5,0.5,b\n`;
  await writeFile(over, overCsv);
  const overRun = await runCli(['jobs', 'prune', '--data', over, '--label', 'kind', '--name', 'over', '--detach', ...connection]);
  assert.equal(overRun.code, 2, overRun.stderr);
  assert.match(overRun.stderr.trim(), new RegExp(`^fleetprune: --data ${over.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\d+ bytes, larger than the ${maxBodyBytes}-byte limit \\(--max-body-bytes\\)$`));
  assert.deepEqual(await server.server.ctx.store.jobs.list(), [], 'nothing was stored');
});

/** Registers `count` versions of `model` straight through the store, then lists them with `models list MODEL`: the names it printed. */
async function insertAndList(server: NonNullable<Awaited<ReturnType<typeof startTestServer>>>, model: string, manifest: Manifest, count: number): Promise<string[]> {
  const at = '2025-01-02T03:04:05.000Z';
  await server.server.ctx.store.transaction(async (tx) => {
    await tx.models.ensureModel(model, at, 'admin');
    for (let seq = 1; seq <= count; seq++) {
      await tx.models.insertVersion({
        model,
        version: String(seq),
        seq,
        artifactId: seq.toString(16).padStart(64, '0'),
        manifest,
        parentArtifactId: null,
        epsilon: null,
        dataFingerprint: 'fp',
        metrics: manifest.metrics,
        createdAt: at,
        createdBy: 'admin',
      });
    }
  });
  const listed = await runCli(['models', 'list', model, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(listed.code, 0, listed.stderr);
  return listed.stdout
    .trimEnd()
    .split('\n')
    .slice(1)
    .map((line) => line.split(' ')[0]!);
}
