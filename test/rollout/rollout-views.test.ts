import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutDetail, rolloutSummary } from '../../server/rollout/rollout-views.ts';
import { rolloutLine, type GrpcRollout } from '../../server/cli/rollout-display.ts';
import { ACTIVATE_EVERYWHERE } from '../../server/rollout/rollout-state-machine.ts';
import { fleetOf, ReducerHarness, specOf, STAGED_STEPS } from './rollout-fixtures.ts';

test('a rollout detail lists device states up to its limit, the ones that need a look first', () => {
  const h = new ReducerHarness(specOf([{ setWeight: 50 }, { pause: {} }], { offline: { initialBackoff: '1s', maxBackoff: '1s', maxAttempts: 1 } }), fleetOf(20));
  const pilot = h.last('assign');
  const away = pilot.devices.slice(-2);
  h.deliver(pilot, (id) => (away.includes(id) ? 'offline' : 'delivered'));
  assert.equal(h.state.phase, 'Paused', 'the pilot settled with two devices unreachable');
  const record = { state: h.state, pendingActions: [], revision: 3 };
  const all = rolloutDetail(record, h.decisions, Number.MAX_SAFE_INTEGER);
  assert.equal(all.deviceStates.length, 20);
  assert.equal(all.devices.total, 20);
  const few = rolloutDetail(record, h.decisions, 3);
  assert.deepEqual(few.deviceStates.map((d) => d.delivery), ['unreachable', 'unreachable', 'delivered']);
  assert.deepEqual(few.deviceStates.map((d) => d.id).slice(0, 2), away, 'in cohort order among themselves');
  assert.equal(few.deviceStates[2]!.id, all.deviceStates.find((d) => d.delivery === 'delivered')!.id);
  assert.equal(few.deviceStates.length, 3);
  assert.equal(few.devices.total, 20, 'the counts still cover every device');
  assert.equal(rolloutDetail(record, h.decisions, 0).deviceStates.length, 0);
});

test('the current step: "activate everywhere" while activating and when it ended there; none once promoted, also after a rollback of the promoted rollout', () => {
  const summary = (h: ReducerHarness) => rolloutSummary({ state: h.state, pendingActions: [], revision: 1 });
  const promoted = new ReducerHarness(specOf([{ setWeight: 50 }, { setWeight: 100 }]), fleetOf(4));
  promoted.deliver(promoted.last('assign'));
  assert.equal(summary(promoted).currentStep, 'set weight 100%');
  promoted.deliver(promoted.last('assign'));
  assert.equal(summary(promoted).currentStep, 'activate everywhere', 'activating the candidate on every device');
  promoted.deliver(promoted.last('assign'));
  assert.deepEqual([summary(promoted).phase, summary(promoted).currentStep], ['Completed', null]);
  promoted.send({ type: 'rollback', at: promoted.at, by: 'carol', runningCandidate: [] });
  assert.deepEqual([summary(promoted).phase, summary(promoted).currentStep], ['RolledBack', null], 'rolled back after it promoted: it finished every step');
  assert.deepEqual(rolloutDetail({ state: promoted.state, pendingActions: [], revision: 1 }, promoted.decisions).steps.map((step) => step.status), ['done', 'done']);

  const stopped = new ReducerHarness(specOf([{ setWeight: 100 }]), fleetOf(4));
  stopped.deliver(stopped.last('assign'));
  assert.equal(summary(stopped).currentStep, 'activate everywhere');
  stopped.send({ type: 'rollback', at: stopped.at, by: 'carol' });
  assert.deepEqual([summary(stopped).phase, summary(stopped).currentStep], ['RolledBack', 'activate everywhere'], 'rolled back while activating: where it stopped');
});

test('steps a promotion passed over are "skipped", not "done": promote --step the current one, promote every remaining one; the steps before stay done', () => {
  const statuses = (h: ReducerHarness) => rolloutDetail({ state: h.state, pendingActions: [], revision: 1 }, h.decisions).steps.map((step) => step.status);
  // STAGED_STEPS: 5% pilot, analysis, 25%, analysis, 50%, analysis, 100%.
  const full = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(40));
  full.deliver(full.last('assign'));
  assert.equal(full.state.stepIndex, 1, 'at the pilot analysis');
  full.send({ type: 'promote', at: full.at, by: 'dave', full: true });
  assert.deepEqual(statuses(full), ['done', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped'], 'activating');
  full.deliver(full.last('assign'));
  assert.equal(full.state.phase, 'Completed');
  assert.deepEqual(statuses(full), ['done', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped'], 'promoted');

  const step = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(40));
  step.deliver(step.last('assign'));
  step.completeAnalysis('Inconclusive');
  assert.equal(step.state.phase, 'Paused');
  step.send({ type: 'promote', at: step.at, by: 'bob', full: false });
  assert.deepEqual(statuses(step), ['done', 'skipped', 'current', 'pending', 'pending', 'pending', 'pending'], 'the inconclusive analysis is skipped, not passed');
  step.deliver(step.last('assign'));
  step.completeAnalysis('Successful');
  assert.deepEqual(statuses(step).slice(0, 4), ['done', 'skipped', 'done', 'done']);
});

test('the CLI line counts devices "activated" while the candidate is activated everywhere, "delivered" otherwise (a rolled-back rollout stopped there too)', () => {
  const line = (fields: Partial<GrpcRollout>) =>
    rolloutLine({
      id: 'ro-1', model: 'iris', candidate_version: '2', previous_production: '1', phase: 'Progressing', terminal: false, step_index: 3, step_count: 3, step_stage: 'activating',
      current_step: ACTIVATE_EVERYWHERE, weight: 100, devices: { total: 3, candidate: 3, delivered: 1, pending: 2, retrying: 0, unreachable: 0, refused: 0 },
      pause_message: '', outcome_status: '', outcome_reason: '', ...fields,
    } as GrpcRollout);
  assert.match(line({}), /devices 1\/3 activated, 2 being sent$/);
  assert.match(line({ current_step: 'set weight 50%', step_index: 1, step_stage: 'delivering' }), /devices 1\/3 delivered, 2 being sent$/);
  assert.match(line({ phase: 'RolledBack', terminal: true, outcome_status: 'rolled-back', outcome_reason: 'by token:ops' }), /devices 1\/3 delivered, 2 being sent {2}rolled-back: by token:ops$/);
});
