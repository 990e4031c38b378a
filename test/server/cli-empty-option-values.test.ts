import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCliBatch, tempDir, type CliResult } from '../helpers/cli.ts';
import { ADMIN_TOKEN } from './helpers/test-server.ts';
import { startRolloutServer } from '../rollout-api/helpers/rollout-server.ts';

/**
 * Over gRPC an empty string is "not given", so an empty option value used to mean what leaving the
 * option out means where REST refuses it: `rollout list --model ''` listed every model's rollouts,
 * `tokens create --label ''` made a token labelled "viewer token". The CLI refuses every such empty
 * value with one line and exit 2, and nothing changes on the server.
 */
test("empty --model, --label, --reason, --broker-url, --server-url and --name are refused with one line and exit 2; nothing is created or changed", async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  const tokensBefore = await (await s.request('GET', '/api/tokens')).json();
  const dir = await tempDir(t);
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];

  const cases: [string[], string][] = [
    [['rollout', 'list', '--model', ''], "--model: empty; give a value or leave the option out (empty, it would mean every model's rollouts)"],
    [['tokens', 'create', '--role', 'viewer', '--label', ''], '--label: empty; give a value or leave the option out (empty, it would mean the default label, "ROLE token")'],
    [['rollout', 'abort', id, '--reason', ''], '--reason: empty; give a value or leave the option out (empty, it would mean no reason)'],
    [['rollout', 'rollback', id, '--reason', ''], '--reason: empty; give a value or leave the option out (empty, it would mean no reason)'],
    [['devices', 'enroll', '--id', 'dev-new', '--out', join(dir, 'a.json'), '--broker-url', ''], "--broker-url: empty; give a value or leave the option out (empty, it would mean the server's public broker URL)"],
    [['devices', 'enroll', '--id', 'dev-new', '--out', join(dir, 'b.json'), '--server-url', ''], "--server-url: empty; give a value or leave the option out (empty, it would mean the server's public URL)"],
    [['models', 'push', dir, '--name', ''], '--name: empty; give a value or leave the option out (empty, it would mean the manifest name)'],
  ];
  const runs = (await runCliBatch(cases.map(([args]) => ({ args: [...args, ...connection] })))) as CliResult[];
  runs.forEach((run, i) => {
    const [args, message] = cases[i]!;
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.equal(run.stderr, `fleetprune: ${message}\n`, args.join(' '));
    assert.equal(run.stdout, '', args.join(' '));
  });

  assert.deepEqual(await (await s.request('GET', '/api/tokens')).json(), tokensBefore, 'no token created');
  assert.equal(((await (await s.request('GET', `/api/rollouts/${id}`)).json()) as { phase: string }).phase !== 'Aborted', true, 'not aborted');
  assert.equal((await s.request('GET', '/api/devices/dev-new')).status, 404, 'no device enrolled');
});
