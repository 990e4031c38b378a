import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decisionLine, rolloutLine, type GrpcRollout } from '../../server/cli/rollout-display.ts';

const rollout = (devices: Partial<GrpcRollout['devices']>) =>
  ({ id: 'ro-1', model: 'wine', candidate_version: '2', phase: 'RolledBack', terminal: true, step_count: 3, weight: 0, outcome_status: '', pause_message: '', devices: { total: 3, candidate: 0, delivered: 1, pending: 0, retrying: 0, unreachable: 0, refused: 0, ...devices } }) as unknown as GrpcRollout;

test('the rollout line names the devices that refused, as it names the unreachable ones (a rolled-back rollout read "1/3 delivered" alone)', () => {
  assert.equal(rolloutLine(rollout({ unreachable: 1, refused: 1 })), 'ro-1  wine 2  RolledBack  3 steps  weight 0%  devices 1/3 delivered, 1 unreachable, 1 refused');
  assert.match(rolloutLine(rollout({ refused: 2 })), /devices 1\/3 delivered, 2 refused$/);
  assert.match(rolloutLine(rollout({ refused: 1, reassigned: 1 })), /devices 1\/3 delivered, 1 refused, 1 reassigned$/, 'a device given another assignment meanwhile refused nothing');
  assert.match(rolloutLine(rollout({ delivered: 3 })), /devices 3\/3 delivered$/);
  // Finished before a step reached two of them: they are counted, so that the line adds up (it read "1/3 delivered" alone).
  assert.match(rolloutLine(rollout({})), /devices 1\/3 delivered, 2 untouched$/);
  // Still running, they are the later steps' devices.
  assert.match(rolloutLine({ ...rollout({}), phase: 'Progressing', terminal: false, step_stage: 'waiting', current_step: 'setWeight: 50' } as GrpcRollout), /devices 1\/3 delivered$/);
  // Just after a rollback the reverts are on their way: "0/3 delivered" alone read as if nothing had happened.
  assert.match(rolloutLine(rollout({ delivered: 0, pending: 2, retrying: 1 })), /devices 0\/3 delivered, 2 being sent, 1 retrying$/);
  // A one-step rollout: "1 step", not "1 steps".
  assert.match(rolloutLine({ ...rollout({}), step_count: 1 }), /^ro-1 {2}wine 2 {2}RolledBack {2}1 step {2}weight/);
});

test('a decision whose message already names who decided is not followed by "(by …)" again: "previous production 2 (by op)" read as if op had made 2 production', () => {
  const decision = (message: string, by: string) => ({ id: 'd1', at: '2026-01-01T00:00:00.000Z', kind: 'start', step_index: 0, verdict: 'started', message, by, measurement_json: '' });
  assert.equal(
    decisionLine(decision('rollout of wine 2 to 3 devices (every device) in 3 steps, started by token:op; previous production 1', 'token:op'), 3),
    '2026-01-01T00:00:00.000Z  step 1  start  started: rollout of wine 2 to 3 devices (every device) in 3 steps, started by token:op; previous production 1',
  );
  assert.equal(decisionLine(decision('aborted by token:op: flaky; reverting 2 device(s) to their baseline', 'token:op'), 3), '2026-01-01T00:00:00.000Z  step 1  start  started: aborted by token:op: flaky; reverting 2 device(s) to their baseline');
  // A message that does not name them (an older server's) still gets it.
  assert.match(decisionLine(decision('resumed', 'token:op'), 3), /started: resumed \(by token:op\)$/);
});
