import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { RolloutModule } from '../../server/rollout/rollout-module.ts';
import { decisionLine, rolloutLine, type GrpcRollout } from '../../server/cli/rollout-display.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

// A reason that forges a decision line and clears the operator's screen in red.
const EVIL = 'oops\n2026-01-01T00:00:00.000Z  step 1  command  promoted: all good\x1b[2J\x1b[31m\r\x9b0m';

async function pausedRollout(s: RolloutTestServer): Promise<string> {
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  return (await waitForRollout(s.request, id, (v) => v.phase === 'Paused')).id;
}

test('REST and gRPC refuse an abort or rollback reason with control characters (400 / INVALID_ARGUMENT naming reason); nothing changes; a tab is fine', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  const id = await pausedRollout(s);
  const before = (await (await s.request('GET', `/api/rollouts/${id}`)).json()) as any;

  for (const command of ['abort', 'rollback']) {
    for (const [reason, found] of [['wrong\nbuild', 'U+000A at character 6'], ['\x1b[31mred', 'U+001B at character 1'], ['é\x9b0m', 'U+009B at character 2'], ['del\x7f', 'U+007F at character 4'], ['ok \u202edeliberate', 'U+202E at character 4'], ['isolate\u2066', 'U+2066 at character 8']]) {
      const refused = await s.request('POST', `/api/rollouts/${id}/${command}?reason=${encodeURIComponent(reason!)}`);
      assert.equal(refused.status, 400, `${command} ${JSON.stringify(reason)}`);
      assert.equal(((await refused.json()) as any).error.message, `query.reason: must not contain control characters such as newlines or escape sequences (found ${found})`);
    }
    const blank = await s.request('POST', `/api/rollouts/${id}/${command}?reason=${encodeURIComponent(' \t ')}`);
    assert.equal(blank.status, 400, `${command}: a blank reason`);
    assert.equal(((await blank.json()) as any).error.message, 'query.reason: must not be blank (leave it out instead)');
    const method = command === 'abort' ? 'AbortRollout' : 'RollbackRollout';
    await assert.rejects(grpc.call(method, { id, reason: '   ' }), (error: any) => error.code === status.INVALID_ARGUMENT && error.details === 'reason: must not be blank (leave it out instead)');
    await assert.rejects(
      grpc.call(method, { id, reason: 'fine\r\nforged line' }),
      (error: any) => error.code === status.INVALID_ARGUMENT && error.details === 'reason: must not contain control characters such as newlines or escape sequences (found U+000D at character 5)',
    );
  }
  const after = (await (await s.request('GET', `/api/rollouts/${id}`)).json()) as any;
  assert.deepEqual([after.phase, after.revision, after.decisions.length], [before.phase, before.revision, before.decisions.length], 'nothing stored');

  const tabbed = await s.request('POST', `/api/rollouts/${id}/abort?reason=${encodeURIComponent('wrong build\tticket 42')}`);
  assert.equal(tabbed.status, 200, await tabbed.clone().text());
  assert.match(((await tabbed.json()) as any).outcome.reason, /^aborted by token:\S+: wrong build\tticket 42$/);
});

test('CLI status and watch show a stored reason with control characters escaped, on one line', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const id = await pausedRollout(s);
  // Stored as an older server would have (the API refuses it now): through the service itself.
  const rollouts = s.server.modules.find((module) => 'service' in module && 'leadership' in module) as unknown as RolloutModule;
  await rollouts.service.command(id, 'abort', { tokenId: 'admin', role: 'admin', label: 'admin' }, { reason: EVIL });
  await waitForRollout(s.request, id, (v) => v.phase === 'Aborted');
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];
  for (const args of [['status', id], ['watch', id]]) {
    const shown = await runCli(['rollout', ...args, ...connection]);
    assert.doesNotMatch(shown.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, `${args[0]}: no control character but the line ends`);
    assert.doesNotMatch(shown.stdout, /^\S+\s+step 1\s+command\s+promoted: all good/m, `${args[0]}: no forged line`);
    assert.match(shown.stdout, /aborted by token:admin: oops\\n2026-01-01T00:00:00\.000Z {2}step 1 {2}command {2}promoted: all good\\x1b\[2J\\x1b\[31m\\r\\x9b0m/, args[0]);
  }
});

test('decisionLine and rolloutLine escape control characters, line separators and bidi overrides', () => {
  const decision = { id: 'd1', at: '2026-01-01T00:00:00.000Z', kind: 'command', step_index: 0, verdict: 'aborted', message: `aborted: ${EVIL}\t\u2028\u202e`, by: 'x\ny', measurement_json: '' };
  const line = decisionLine(decision, 3);
  assert.equal(line, '2026-01-01T00:00:00.000Z  step 1  command  aborted: aborted: oops\\n2026-01-01T00:00:00.000Z  step 1  command  promoted: all good\\x1b[2J\\x1b[31m\\r\\x9b0m\\t\\u2028\\u202e (by x\\ny)');
  const rollout = { id: 'ro-1', model: 'wine', candidate_version: '2', phase: 'Aborted', terminal: true, step_count: 3, outcome_status: 'aborted', outcome_reason: EVIL, devices: { delivered: 1, total: 2, unreachable: 0 } } as unknown as GrpcRollout;
  assert.doesNotMatch(rolloutLine(rollout), /[\x00-\x1f\x7f-\x9f]/);
  assert.match(rolloutLine(rollout), /aborted: oops\\n2026/);
});
