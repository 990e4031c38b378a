import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

// Two operators see a rollout held in a timed pause (an hour) and both resume it: the hold is
// lifted once, and the timed pause goes on; the second resume, naming the hold it saw, is refused
// rather than ending the timed pause too (which promoted the candidate an hour early).
const STEPS = [{ setWeight: 25 }, { pause: { duration: '1h' } }, { setWeight: 100 }];

async function heldInTimedPause(s: RolloutTestServer): Promise<{ id: string; since: string }> {
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: STEPS } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 1);
  assert.equal((await s.request('POST', `/api/rollouts/${id}/pause`)).status, 200);
  const held = await waitForRollout(s.request, id, (v) => v.pause?.reason === 'manual');
  return { id, since: held.pause.since };
}

test('REST and gRPC: two resumes of a held timed pause at once lift the hold once; the second is a conflict, and the timed pause goes on', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());

  const { id, since } = await heldInTimedPause(s);
  const answers = await Promise.all([1, 2].map(() => s.request('POST', `/api/rollouts/${id}/resume?pausedSince=${encodeURIComponent(since)}`)));
  assert.deepEqual(answers.map((r) => r.status).sort(), [200, 409]);
  const conflict = (await answers.find((r) => r.status === 409)!.json()) as { error: { code: string; message: string } };
  assert.equal(conflict.error.code, 'conflict');
  assert.match(conflict.error.message, new RegExp(`^rollout ${id} is no longer in the pause of ${since.replace(/\./g, '\\.')} \\(it is paused since .*: step 2 pauses until .*\\); not resumed again$`));
  const after = await waitForRollout(s.request, id, (v) => v.phase === 'Paused');
  assert.deepEqual([after.stepIndex, after.pause.reason], [1, 'step'], 'still in the timed pause: not ended, not promoted');
  // Bad input names the field.
  const bad = await s.request('POST', `/api/rollouts/${id}/resume?pausedSince=yesterday`);
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as any).error.message, /^query\.pausedSince: must be the time the pause began as the rollout showed it \(pause\.since over REST, pause_since over gRPC\), such as [0-9TZ:.-]+$/);
  const elsewhere = await s.request('POST', `/api/rollouts/${id}/pause?pausedSince=${encodeURIComponent(since)}`);
  assert.equal(elsewhere.status, 400, 'only resume takes it');

  // gRPC: held again, then two resumes naming that hold.
  assert.equal((await s.request('POST', `/api/rollouts/${id}/pause`)).status, 200);
  const heldAgain = await waitForRollout(s.request, id, (v) => v.pause?.reason === 'manual');
  const calls = await Promise.allSettled([1, 2].map(() => grpc.call('ResumeRollout', { id, paused_since: heldAgain.pause.since })));
  assert.deepEqual(calls.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const failure = (calls.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
  assert.equal(failure.code, status.FAILED_PRECONDITION);
  assert.match(failure.details, /is no longer in the pause of .*; not resumed again$/);
  assert.equal((await grpc.call('GetRollout', { id })).rollout.step_index, 1, 'gRPC: the timed pause goes on');
  await assert.rejects(grpc.call('PromoteRollout', { id, paused_since: heldAgain.pause.since }), (error: any) => error.code === status.INVALID_ARGUMENT && /^paused_since: only ResumeRollout/.test(error.details));
  await assert.rejects(grpc.call('ResumeRollout', { id, paused_since: 'soon' }), (error: any) => error.code === status.INVALID_ARGUMENT && /^paused_since: must be the time the pause began as the rollout showed it \(pause\.since over REST, pause_since over gRPC\), such as [0-9TZ:.-]+$/.test(error.details));
  // An older client (no pause named) resumes from whatever pause it is in: here it ends the timed pause.
  const old = await s.request('POST', `/api/rollouts/${id}/resume`);
  assert.equal(old.status, 200, await old.clone().text());
  await waitForRollout(s.request, id, (v) => v.stepIndex === 2 || v.phase === 'Completed');
});

test('CLI: rollout resume names the pause it read (the audit log shows which), so a resume racing another is refused rather than ending the timed pause', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const { id, since } = await heldInTimedPause(s);
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];
  const resumed = await runCli(['rollout', 'resume', id, ...connection]);
  assert.equal(resumed.code, 0, resumed.stderr);
  const after = await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.pause?.reason === 'step');
  assert.equal(after.stepIndex, 1, 'the hold lifted, the timed pause goes on');
  const audit = (await (await s.request('GET', '/api/audit?limit=5')).json()) as { entries: { action: string; details: Record<string, unknown> }[] };
  const entry = audit.entries.find((e) => e.action === 'rollout.resume');
  assert.deepEqual(entry?.details, { pausedSince: since });
});
