import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';

test('rollout status and watch show a rollout over 20,000 devices whose detail is over 4 MiB (the cohort in every query of its decision log)', async (t) => {
  const s = await startRolloutServer(t, { devices: 20_000 });
  if (!s) return;
  // Every measurement records its queries as sent: here three, each naming the 20,000 devices.
  const query = 'count(fleetprune_process_cpu_user_seconds_total{instance!~"{{args.cohort}}"})';
  const metric = (name: string) => ({ name, interval: '1s', count: 2, successCondition: 'result[0] >= 0', provider: { builtin: { query, baselineQuery: query, samplesQuery: query } } });
  const started = await s.request('POST', '/api/rollouts', {
    json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 100 }, { analysis: { metrics: ['a', 'b', 'c', 'd', 'e'].map(metric) } }, { pause: {} }] },
  });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  const paused = await waitForRollout(s.request, id, (v) => v.phase === 'Paused' || v.terminal, 60_000);
  assert.equal(paused.phase, 'Paused');
  assert.ok(JSON.stringify(paused).length > 4 * 1024 * 1024, 'the detail is over grpc-js\'s default 4 MiB limit');

  const env = { FLEETPRUNE_SERVER: s.grpcAddress, FLEETPRUNE_TOKEN: ADMIN_TOKEN };
  const status = await runCli(['rollout', 'status', id], env);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^${id}  wine 2  Paused  step 3/3`));
  assert.match(status.stdout, /^ {2}\S+ {2}step 2 {2}measurement {2}/m);

  // watch reads the rollout first (its step count), then follows it: it ends with the rollback.
  const watching = runCli(['rollout', 'watch', id], env, { timeoutMs: 60_000 });
  assert.equal((await s.request('POST', `/api/rollouts/${id}/rollback`)).status, 200);
  const watched = await watching;
  assert.equal(watched.code, 1, watched.stderr);
  assert.match(watched.stderr, new RegExp(`rollout ${id} ended RolledBack`));
});

test('rollout start -f of a file far over the spec limit (a model file passed by mistake) names the file and the limit', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-spec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Over the server's gRPC message limit too: grpc-js answered "Received message larger than max (… vs …)".
  const file = join(dir, 'model.onnx');
  await writeFile(file, Buffer.alloc(20_000_000, 7));
  const started = await runCli(['rollout', 'start', '-f', file], { FLEETPRUNE_SERVER: s.grpcAddress, FLEETPRUNE_TOKEN: ADMIN_TOKEN });
  assert.equal(started.code, 2);
  assert.equal(started.stderr, `fleetprune: --file: ${file} is 20000000 bytes; a rollout spec is at most 1048576\n`);
  assert.equal(started.stdout, '');
  assert.deepEqual(((await (await s.request('GET', '/api/rollouts')).json()) as any).rollouts, []);
});

test('rollout validate and start -f of a device that never ends (/dev/zero) read past the limit only, then refuse in one line', async () => {
  for (const command of ['validate', 'start']) {
    const args = command === 'start' ? ['rollout', 'start', '-f', '/dev/zero', '--server', '127.0.0.1:1'] : ['rollout', 'validate', '-f', '/dev/zero'];
    const run = await runCli(args, {}, { timeoutMs: 30_000 });
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stderr, 'fleetprune: --file: /dev/zero is over 1048576 bytes; a rollout spec is at most 1048576\n');
  }
});

test('rollout validate and start -f of a spec that is not UTF-8 (Latin-1, UTF-16) are refused in one line naming the encoding, before anything is sent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-spec-encoding-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const text = 'model: wine\ncandidateVersion: "2"\ntarget:\n  matchExpressions:\n    - {key: site, operator: NotIn, values: [café]}\nsteps:\n  - pause: {}\n';
  const latin1 = join(dir, 'latin1.yaml');
  await writeFile(latin1, Buffer.from(text, 'latin1'));
  const utf16 = join(dir, 'utf16.yaml');
  await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
  for (const [file, encoding] of [[latin1, /not UTF-8 text \(Latin-1 or Windows-1252\?\)/], [utf16, /not UTF-8 text \(UTF-16\?\)/]] as const) {
    // 127.0.0.1:1: nothing listens there; a spec that got past the check would be "no server answered".
    for (const args of [['rollout', 'validate', '-f', file], ['rollout', 'start', '-f', file, '--server', '127.0.0.1:1', '--token', 'fp_x']]) {
      const run = await runCli(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^fleetprune: --file: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is ${encoding.source}.*\\n$`));
    }
  }
  // A directory or a missing file in plain words, not "EISDIR: illegal operation on a directory, read".
  for (const [file, reason] of [[dir, 'is a directory'], [join(dir, 'nope.yaml'), 'no such file or directory']]) {
    const run = await runCli(['rollout', 'validate', '-f', file!]);
    assert.deepEqual([run.code, run.stderr], [2, `fleetprune: --file: cannot read ${file} (${reason})\n`]);
  }
  const utf8 = join(dir, 'utf8.yaml');
  await writeFile(utf8, text);
  const valid = await runCli(['rollout', 'validate', '-f', utf8]);
  assert.equal(valid.code, 0, valid.stderr);
  assert.match(valid.stdout, /^valid: wine 2 in 1 step/m);
});
