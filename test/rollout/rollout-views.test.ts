import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutDetail, rolloutSummary } from '../../server/rollout/rollout-views.ts';
import { fleetOf, ReducerHarness, specOf } from './rollout-fixtures.ts';

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
