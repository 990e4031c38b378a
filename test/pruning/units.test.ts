import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forward, parameterCount, type DenseNetwork } from '../../shared/model/dense-network.ts';
import { selectByOutgoingL1, selectUsefulUnits } from '../../server/pruning/useful-units.ts';
import { transferUnits } from '../../server/pruning/transfer.ts';
import { scorePredictions, withinTolerance } from '../../shared/model/scoring.ts';
import { createRng } from '../../shared/util/rng.ts';

const stats = (std: number[]) => ({ std: Float32Array.from(std), mean: new Float32Array(std.length) });

test('relative ε keeps units whose variability exceeds ε × the layer maximum', () => {
  const keep = selectUsefulUnits([stats([1, 0.5, 0.29, 0.31, 0]), stats([2, 4])], 0.3, 'relative');
  assert.deepEqual(keep, [[0, 1, 3], [0, 1]]);
});

test('absolute ε compares with ε itself', () => {
  assert.deepEqual(selectUsefulUnits([stats([1, 0.5, 0.29, 0.31])], 0.4, 'absolute'), [[0, 1]]);
});

test('a layer is never emptied: its most variable unit survives', () => {
  assert.deepEqual(selectUsefulUnits([stats([0, 0, 0]), stats([0.1, 0.3, 0.2])], 0.5, 'absolute'), [[0], [1]]);
  assert.deepEqual(selectUsefulUnits([stats([0.2, 0.9, 0.1])], 0.99, 'relative'), [[1]]);
});

test('L1 baseline keeps the units with the largest outgoing weights', () => {
  // Next layer: 3 inputs x 2 units; row sums of |w|: 1, 5, 3.
  const next = { inputs: 3, units: 2, weights: Float32Array.from([0.5, -0.5, 2, -3, 1, 2]) };
  assert.deepEqual(selectByOutgoingL1([next], [2]), [[1, 2]]);
});

function randomNetwork(seed: number, sizes: number[]): DenseNetwork {
  const rng = createRng(seed);
  const layers = sizes.slice(1).map((units, l) => {
    const inputs = sizes[l]!;
    return {
      inputs,
      units,
      weights: Float32Array.from({ length: inputs * units }, () => rng() * 2 - 1),
      bias: Float32Array.from({ length: units }, () => rng() - 0.5),
      activation: (l === sizes.length - 2 ? 'softmax' : 'relu') as 'softmax' | 'relu',
    };
  });
  return { inputMean: new Float32Array(sizes[0]!), inputScale: new Float32Array(sizes[0]!).fill(1), layers };
}

test('transfer with mean folding reproduces the original when dropped units are constant', () => {
  const network = randomNetwork(3, [4, 6, 5, 3]);
  // Make hidden units 1 and 4 of layer 0 constant: zero incoming weights, so they output relu(bias).
  const first = network.layers[0]!;
  for (const unit of [1, 4]) {
    for (let i = 0; i < first.inputs; i++) first.weights[i * first.units + unit] = 0;
    first.bias[unit] = 0.7;
  }
  const means = [Float32Array.from([0, 0.7, 0, 0, 0.7, 0]), new Float32Array(5)];
  const keep = [[0, 2, 3, 5], [0, 1, 2, 3, 4]];
  const folded = transferUnits(network, keep, means);
  const unfolded = transferUnits(network, keep);
  assert.equal(parameterCount(folded), 4 * 4 + 4 + 4 * 5 + 5 + 5 * 3 + 3);
  const rng = createRng(9);
  const rows = Array.from({ length: 50 }, () => Array.from({ length: 4 }, () => rng() * 4 - 2));
  const original = forward(network, rows);
  const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((row, r) => row.map((v, c) => Math.abs(v - b[r]![c]!))));
  assert.ok(maxDiff(forward(folded, rows), original) < 1e-5, 'folding the constant units changes nothing');
  assert.ok(maxDiff(forward(unfolded, rows), original) > 1e-3, 'dropping them without folding does change the output');
});

test('transfer copies the kept weights exactly', () => {
  const network = randomNetwork(5, [3, 4, 2]);
  const small = transferUnits(network, [[1, 3]]);
  const [first, second] = small.layers;
  assert.deepEqual([first!.inputs, first!.units, second!.inputs, second!.units], [3, 2, 2, 2]);
  assert.equal(first!.weights[0], network.layers[0]!.weights[1]);
  assert.equal(first!.weights[1], network.layers[0]!.weights[3]);
  assert.equal(second!.weights[0], network.layers[1]!.weights[1 * 2 + 0]);
  assert.equal(second!.weights[3], network.layers[1]!.weights[3 * 2 + 1]);
  assert.deepEqual(Array.from(second!.bias), Array.from(network.layers[1]!.bias));
});

test('scores: accuracy, MSE and R², and the tolerance rule', () => {
  assert.deepEqual(scorePredictions('classification', [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1]), { accuracy: 2 / 3 });
  const regression = scorePredictions('regression', [[1], [2], [3]], [1, 2, 5]);
  assert.ok('mse' in regression);
  assert.ok(Math.abs(regression.mse - 4 / 3) < 1e-12);
  assert.ok(Math.abs(regression.r2 - (1 - 4 / (26 / 3))) < 1e-12);
  const tol = { accuracyPoints: 0.5, mseFraction: 0.02, lossFraction: 0.5 };
  assert.equal(withinTolerance({ accuracy: 0.9951 }, { accuracy: 1 }, tol), true);
  assert.equal(withinTolerance({ accuracy: 0.994 }, { accuracy: 1 }, tol), false);
  assert.equal(withinTolerance({ mse: 10.2, r2: 0 }, { mse: 10, r2: 0 }, tol), true);
  assert.equal(withinTolerance({ mse: 10.3, r2: 0 }, { mse: 10, r2: 0 }, tol), false);
});

test('withinTolerance of a regression is 2% of the MSE whatever the label\'s units', () => {
  const tol = { accuracyPoints: 0.5, mseFraction: 0.02, lossFraction: 0.5 };
  for (const scale of [1e6, 1, 1e-8, 1e-20]) {
    const squared = scale * scale;
    assert.equal(withinTolerance({ mse: 10.2 * squared, r2: 0 }, { mse: 10 * squared, r2: 0 }, tol), true, `2% worse at scale ${scale}`);
    assert.equal(withinTolerance({ mse: 10.3 * squared, r2: 0 }, { mse: 10 * squared, r2: 0 }, tol), false, `3% worse at scale ${scale}`);
    assert.equal(withinTolerance({ mse: 40 * squared, r2: 0 }, { mse: 10 * squared, r2: 0 }, tol), false, `4 times worse at scale ${scale}`);
  }
  assert.equal(withinTolerance({ mse: 0, r2: 1 }, { mse: 0, r2: 1 }, tol), true, 'a perfect fit matches itself');
});

test('withinTolerance also bounds the cross-entropy of classifiers: by a fraction, or 0.05 nats near zero', () => {
  const tol = { accuracyPoints: 0.5, mseFraction: 0.02, lossFraction: 0.5 };
  const same = { accuracy: 1 };
  // Equal accuracy, but the loss grew by 60%: right by thin margins, so not within tolerance.
  assert.equal(withinTolerance(same, same, tol, { candidate: 0.32, reference: 0.2 }), false);
  assert.equal(withinTolerance(same, same, tol, { candidate: 0.3, reference: 0.2 }), true);
  // A near-zero reference loss still allows 0.05 nats.
  assert.equal(withinTolerance(same, same, tol, { candidate: 0.0501, reference: 0.001 }), true);
  assert.equal(withinTolerance(same, same, tol, { candidate: 0.0515, reference: 0.001 }), false);
  // The accuracy check still applies when the loss is fine.
  assert.equal(withinTolerance({ accuracy: 0.98 }, same, tol, { candidate: 0.1, reference: 0.2 }), false);
  // Regression ignores the cross-entropy bound: MSE is already its loss.
  assert.equal(withinTolerance({ mse: 10.2, r2: 0 }, { mse: 10, r2: 0 }, tol, { candidate: 9, reference: 1 }), true);
});
