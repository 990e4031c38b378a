import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutLine, type GrpcRollout } from '../../server/cli/rollout-display.ts';

const rollout = (devices: Partial<GrpcRollout['devices']>) =>
  ({ id: 'ro-1', model: 'wine', candidate_version: '2', phase: 'RolledBack', terminal: true, step_count: 3, weight: 0, outcome_status: '', pause_message: '', devices: { total: 3, candidate: 0, delivered: 1, pending: 0, retrying: 0, unreachable: 0, refused: 0, ...devices } }) as unknown as GrpcRollout;

test('the rollout line names the devices that refused, as it names the unreachable ones (a rolled-back rollout read "1/3 delivered" alone)', () => {
  assert.equal(rolloutLine(rollout({ unreachable: 1, refused: 1 })), 'ro-1  wine 2  RolledBack  3 steps  weight 0%  devices 1/3 delivered, 1 unreachable, 1 refused');
  assert.match(rolloutLine(rollout({ refused: 2 })), /devices 1\/3 delivered, 2 refused$/);
  assert.match(rolloutLine(rollout({ delivered: 3 })), /devices 3\/3 delivered$/);
});
