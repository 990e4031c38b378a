import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeeds, streamSeed } from '../../server/pruning/seeds.ts';
import { createDenseModel } from '../../server/pruning/training.ts';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';

/** The hidden kernels of a fresh general model, each flattened. */
function hiddenKernels(runSeed: number): number[][] {
  const model = createDenseModel(6, [8, 8, 8], 3, 'classification', runSeeds(runSeed).generalInit);
  try {
    // getWeights(): kernel, bias per layer; the last layer is the output.
    return model.getWeights().filter((_, i) => i % 2 === 0).slice(0, 3).map((w) => Array.from(w.dataSync()));
  } finally {
    model.dispose();
  }
}

test('every random stream of every seed from 0 to 200 has a seed of its own, in range and never 0', () => {
  const seen = new Map<number, string>();
  for (let seed = 0; seed <= 200; seed++) {
    for (const [stream, value] of Object.entries(runSeeds(seed))) {
      assert.ok(Number.isInteger(value) && value >= 1 && value <= 2 ** 31 - 1, `${stream} of seed ${seed}: ${value}`);
      assert.equal(seen.get(value), undefined, `${stream} of seed ${seed} repeats ${seen.get(value)}`);
      seen.set(value, `${stream} of seed ${seed}`);
    }
  }
  assert.equal(streamSeed(7, 'layer/0'), streamSeed(7, 'layer/0'), 'a stream seed is a function of seed and name');
});

// With `seed + layer index`, seed 1's second and third hidden layers began as seed 2's first and second.
test('general models at consecutive seeds start from unrelated weights', async () => {
  await initTfjs();
  for (const seed of [0, 1, 2, 41]) {
    const a = hiddenKernels(seed);
    const b = hiddenKernels(seed + 1);
    for (const [i, kernelA] of a.entries()) {
      for (const [j, kernelB] of b.entries()) {
        if (kernelA.length !== kernelB.length) continue;
        const same = kernelA.filter((value, k) => value === kernelB[k]).length;
        assert.equal(same, 0, `seed ${seed} layer ${i} and seed ${seed + 1} layer ${j} share ${same} initial weights`);
      }
    }
    assert.deepEqual(hiddenKernels(seed), a, `seed ${seed} starts from the same network every time`);
  }
  assert.equal(tf.memory().numTensors, 0, 'nothing left behind');
});
