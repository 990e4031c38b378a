import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDenseModel } from '../../server/pruning/training.ts';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';

/** The model's initial weights, flattened. */
function initialWeights(seed: number): number[] {
  const model = createDenseModel(4, [16, 8], 3, 'classification', seed);
  try {
    return model.getWeights().flatMap((weight) => Array.from(weight.dataSync()));
  } finally {
    model.dispose();
  }
}

// tfjs reads a seed of 0 as none: the first layer's weights came from Math.random at every run.
test('--seed 0 makes the same initial network every time, as any other seed does', async () => {
  await initTfjs();
  assert.deepEqual(initialWeights(0), initialWeights(0));
  assert.deepEqual(initialWeights(5), initialWeights(5));
  assert.notDeepEqual(initialWeights(0), initialWeights(1), 'seed 0 is a seed of its own');
  assert.equal(tf.memory().numTensors, 0, 'nothing left behind');
});
