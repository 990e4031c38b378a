import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sweepSummary } from '../../server/jobs/prune-worker-protocol.ts';
import type { SweepEntry } from '../../server/pruning/report.ts';

function entry(epsilon: number, fields: Partial<SweepEntry>): SweepEntry {
  return {
    epsilon, layers: [8, 3], params: 100, flops: 200, param_cut: 0.5, retrained: true,
    validation_before_retrain: { accuracy: 0.9 }, validation: { accuracy: 0.8 }, validation_loss: 0.2, validation_loss_before_retrain: 0.3,
    test_before_retrain: { accuracy: 0.91 }, test: { accuracy: 0.81 }, within_tolerance: true, within_tolerance_before_retrain: true, weights: 'retrained',
    ...fields,
  };
}

test('a job\'s sweep shows each ε\'s test score of the weights its model keeps: retrained, transferred (before retraining), or none when not retrained', () => {
  const sweep = sweepSummary([
    entry(0.1, {}),
    entry(0.3, { within_tolerance: false, weights: 'transferred' }),
    entry(0.5, { retrained: false, validation: null, validation_loss: null, validation_loss_before_retrain: null, test: null, within_tolerance: null, within_tolerance_before_retrain: null, weights: null }),
  ]);
  assert.deepEqual(sweep, [
    { epsilon: 0.1, params: 100, paramCut: 0.5, test: { accuracy: 0.81 }, weights: 'retrained' },
    { epsilon: 0.3, params: 100, paramCut: 0.5, test: { accuracy: 0.91 }, weights: 'transferred' },
    { epsilon: 0.5, params: 100, paramCut: 0.5, test: null, weights: null },
  ]);
});
