import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { registerVersion, stagedSpecYaml } from './helpers/rollout-fixtures.ts';
import { startRolloutServer } from './helpers/rollout-server.ts';

// stagedSpecYaml's analysis: successCondition `result[0] >= 0` over a CPU-seconds counter (never negative).
const TRIVIAL = 'steps[1].analysis metric "server-cpu": successCondition "result[0] >= 0" is true for every result of 0 or more: unless the query can return negative values (counts, rates, durations and ratios cannot), it passes every measurement';
const LOOSE = 'steps[2].analysis metric "accuracy": tolerance 100 points: the bound (baseline − 100) is at most 0 points whatever the baseline (0-100), and no accuracy is below 0, so the check can never fail';
// The loose check is relative, with the default minSamples 4, and the fleet's two target devices are its cohort: the start says it can never have its samples.
const SMALL = 'steps[2].analysis metric "accuracy": the cohort holds 2 devices by then, under its minSamples 4 (one sample a device): every measurement will be Inconclusive and the rollout will pause there; grow the cohort in an earlier step, or set minSamples lower';
const withLooseCheck = (yaml: string) => yaml.replace('  - pause:', '  - analysis: {metrics: [{name: accuracy, relative: {metric: accuracy, tolerance: 100}}]}\n  - pause:');

test('a start of a spec whose analysis decides nothing succeeds with warnings: REST, gRPC, CLI start and validate', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const abort = async (id: string) => assert.equal((await s.request('POST', `/api/rollouts/${id}/abort`)).status, 200);
  // Each start ships a version no rollout failed yet (an abort marks its candidate failed, which a later start would warn about).
  for (const version of ['3', '4', '5']) await registerVersion(s.server.ctx.store, 'wine', version);

  const rest = await s.request('POST', '/api/rollouts', { body: withLooseCheck(stagedSpecYaml()), contentType: 'application/yaml' });
  assert.equal(rest.status, 201, 'warnings do not block the start');
  const started = (await rest.json()) as { id: string; phase: string; warnings: string[] };
  assert.deepEqual(started.warnings, [TRIVIAL, LOOSE, SMALL]);
  assert.equal(started.phase, 'Progressing');
  await abort(started.id);

  const viaGrpc = await grpc.call('StartRollout', { spec: stagedSpecYaml({ version: '3' }) });
  assert.deepEqual(viaGrpc.warnings, [TRIVIAL]);
  await abort(viaGrpc.id);
  // A spec without such analysis has none.
  const clean = await grpc.call('StartRollout', { spec: stagedSpecYaml({ version: '4' }).replace('result[0] >= 0', 'result[0] >= 0.001') });
  assert.deepEqual(clean.warnings, []);
  await abort(clean.id);

  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-warnings-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const specFile = join(dir, 'rollout.yaml');
  await writeFile(specFile, withLooseCheck(stagedSpecYaml({ version: '5' })));
  const cli = await runCli(['rollout', 'start', '-f', specFile, '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^ro-[0-9a-f]+\n$/, 'stdout stays the bare id');
  assert.ok(cli.stderr.startsWith(`warning: ${TRIVIAL}\nwarning: ${LOOSE}\nwarning: ${SMALL}\nstarted rollout `), cli.stderr);
  await abort(cli.stdout.trim());

  const validated = await runCli(['rollout', 'validate', '-f', specFile]);
  assert.equal(validated.code, 0, validated.stderr);
  assert.equal(validated.stdout, `warning: ${TRIVIAL}\nwarning: ${LOOSE}\nvalid: wine 5 in 5 steps, 2 warnings\n`);
});
