import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutDetail } from '../../server/rollout/rollout-views.ts';
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
