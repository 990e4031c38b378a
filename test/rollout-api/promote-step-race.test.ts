import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { RolloutCommandError } from '../../server/rollout/rollout-state-machine.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { fleetOf, specOf, T0 } from '../rollout/rollout-fixtures.ts';
import { STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

// Two operators see a rollout held at step 2 (index 1) and both run `promote --step`: it must
// skip step 2 only, the second request refused because the rollout is already past it.
const STEPS = [{ setWeight: 25 }, { pause: {} }, { pause: {} }, { pause: {} }, { setWeight: 100 }];

test('in-memory repository: two promotions by one step from the same step at once skip one step; the other is refused', async () => {
  const scheduler = new ManualScheduler(T0);
  const controller = new RolloutController({
    repository: new InMemoryRolloutRepository(),
    fleet: new InMemoryFleet(fleetOf(4)),
    models: new InMemoryModelStatus('1'),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler,
    newId: () => 'ro-race',
  });
  await controller.start(specOf(STEPS), { by: 'alice' });
  await controller.idle();
  assert.deepEqual([(await controller.status('ro-race')).phase, (await controller.status('ro-race')).stepIndex], ['Paused', 1]);
  const results = await Promise.allSettled([controller.promote('ro-race', 'alice', { full: false, fromStep: 1 }), controller.promote('ro-race', 'bob', { full: false, fromStep: 1 })]);
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const refused = results.find((r) => r.status === 'rejected')!.reason;
  assert.ok(refused instanceof RolloutCommandError);
  assert.equal(refused.message, 'rollout ro-race is already past step 2 (it is at step 3/5); not promoted again');
  assert.equal((await controller.status('ro-race')).stepIndex, 2, 'one step skipped, not two');
  // Without the expected step (an older client) a promotion goes on from wherever the rollout is.
  await controller.promote('ro-race', 'carol', { full: false });
  assert.equal((await controller.status('ro-race')).stepIndex, 3);
  controller.stop();
});

async function pausedAtStep2(s: RolloutTestServer): Promise<string> {
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: STEPS } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 1);
  return id;
}

for (const engine of STORE_ENGINES) {
  describe(`promote by one step against a server (${engine})`, () => {
    test('REST and gRPC: two concurrent promotions from the step the operators saw skip one step; the second is a conflict naming the step', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
      t.after(() => grpc.close());

      // REST: both at once.
      const id = await pausedAtStep2(s);
      const answers = await Promise.all([1, 2].map(() => s.request('POST', `/api/rollouts/${id}/promote?step=true&fromStepIndex=1`)));
      assert.deepEqual(answers.map((r) => r.status).sort(), [200, 409]);
      const conflict = (await answers.find((r) => r.status === 409)!.json()) as { error: { code: string; message: string } };
      assert.equal(conflict.error.code, 'conflict');
      assert.equal(conflict.error.message, `rollout ${id} is already past step 2 (it is at step 3/5); not promoted again`);
      const afterRest = await waitForRollout(s.request, id, (v) => v.phase === 'Paused');
      assert.equal(afterRest.stepIndex, 2, 'REST: one step skipped, not two');
      assert.equal(afterRest.decisions.filter((d: any) => d.verdict === 'promoted').length, 1);
      // Bad input is refused naming the field; an index ahead of the rollout is refused too.
      const bad = await s.request('POST', `/api/rollouts/${id}/promote?step=true&fromStepIndex=two`);
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as any).error.message, /^query\.fromStepIndex: must be a whole number from 0 to 999999, not "two"$/);
      const ahead = await s.request('POST', `/api/rollouts/${id}/promote?step=true&fromStepIndex=3`);
      assert.equal(ahead.status, 409);
      assert.equal(((await ahead.json()) as any).error.message, `rollout ${id} is not at step 4 yet (it is at step 3/5); not promoted`);
      // One past its last step is no step at all (it said "not at step 100 yet").
      const past = await s.request('POST', `/api/rollouts/${id}/promote?step=true&fromStepIndex=99`);
      assert.equal(past.status, 409);
      assert.equal(((await past.json()) as any).error.message, `rollout ${id} has no step 100: its spec has 5 steps (it is at step 3/5); not promoted`);
      // gRPC: both at once, from the step now shown.
      const calls = await Promise.allSettled([1, 2].map(() => grpc.call('PromoteRollout', { id, step: true, from_step_index: 2 })));
      assert.deepEqual(calls.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      const failure = (calls.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
      assert.equal(failure.code, status.FAILED_PRECONDITION);
      assert.equal(failure.details, `rollout ${id} is already past step 3 (it is at step 4/5); not promoted again`);
      assert.equal((await grpc.call('GetRollout', { id })).rollout.step_index, 3, 'gRPC: one step skipped, not two');
      await assert.rejects(grpc.call('ResumeRollout', { id, from_step_index: 3 }), (error: any) => error.code === status.INVALID_ARGUMENT && /^from_step_index: only PromoteRollout/.test(error.details));
      // An older client (no expected step) still promotes from wherever the rollout is.
      const old = await s.request('POST', `/api/rollouts/${id}/promote?step=true`);
      assert.equal(old.status, 200, await old.clone().text());
      await waitForRollout(s.request, id, (v) => v.phase === 'Completed');
    });
  });
}

test('CLI: promote --step --from-step N twice: the second is refused (exit 2) and the rollout skipped one step', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const id = await pausedAtStep2(s);
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];
  const [first, second] = [await runCli(['rollout', 'promote', id, '--step', '--from-step', '2', ...connection]), await runCli(['rollout', 'promote', id, '--step', '--from-step', '2', ...connection])];
  assert.equal(first.code, 0, first.stderr);
  assert.equal(second.code, 2, second.stdout);
  assert.equal(second.stderr, `fleetprune: rollout ${id} is already past step 2 (it is at step 3/5); not promoted again\n`);
  assert.equal((await waitForRollout(s.request, id, (v) => v.phase === 'Paused')).stepIndex, 2);
  // Without --from-step, the CLI sends the step it reads: a plain promote --step still works.
  const plain = await runCli(['rollout', 'promote', id, '--step', ...connection]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal((await waitForRollout(s.request, id, (v) => v.phase === 'Paused')).stepIndex, 3);
  const misuse = await runCli(['rollout', 'promote', id, '--from-step', '4', ...connection]);
  assert.equal(misuse.code, 2);
  assert.match(misuse.stderr, /--from-step: only with --step/);
});
