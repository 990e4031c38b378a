import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReducerHarness, specOf } from '../rollout/rollout-fixtures.ts';

const marks = (h: ReducerHarness) => h.actions.flatMap((a) => (a.kind === 'markVersion' ? [{ version: a.version, status: a.status, reason: a.reason }] : []));

/** The restored version's reason read `restored by rollback of 2`: a version, not the rollout that did it. */
test('the rollback of a promoted rollout restores the previous production with a reason naming the rollout (and the candidate)', () => {
  const h = new ReducerHarness(specOf([{ setWeight: 50 }, { setWeight: 100 }]), undefined, '1', 'ro-restore');
  h.deliver(h.last('assign'));
  h.deliver(h.last('assign'));
  h.deliver(h.last('assign'));
  assert.equal(h.state.phase, 'Completed');
  h.send({ type: 'rollback', at: h.at, by: 'token:ops', reason: 'complaints', runningCandidate: [] });
  const model = h.state.spec.model;
  assert.deepEqual(marks(h).slice(-2), [
    { version: '2', status: 'rolled-back', reason: 'rolled back by token:ops: complaints' },
    { version: '1', status: 'production', reason: `restored by rollback of rollout ro-restore (${model}@2)` },
  ]);
});

/**
 * docs/rollout-spec.md ("API and CLI"): a candidate rolled back before full promotion never
 * was production and is marked `failed` (as aborted or failed rollouts mark it); after full
 * promotion it is `rolled-back`. Alerts and the registry depend on that split.
 */
test('a rollback before full promotion marks the candidate failed, after full promotion rolled-back, as documented', () => {
  for (const paused of [false, true]) {
    const h = new ReducerHarness(specOf([{ setWeight: 50 }, { setWeight: 100 }]), undefined, '1', 'ro-early');
    h.deliver(h.last('assign'));
    if (paused) h.send({ type: 'pause', at: h.at, by: 'token:ops' });
    assert.equal(h.state.phase, paused ? 'Paused' : 'Progressing');
    h.send({ type: 'rollback', at: h.at, by: 'token:ops' });
    assert.equal(h.state.phase, 'RolledBack');
    assert.deepEqual(marks(h), [{ version: '2', status: 'failed', reason: 'rolled back by token:ops' }], `rolled back while ${h.state.phase}: the candidate is failed, nothing restored`);
  }
});
