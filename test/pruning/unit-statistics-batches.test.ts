import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';
import type { DenseNetwork } from '../../shared/model/dense-network.ts';
import { MEASURE_BATCH_ROWS, measureHiddenUnits } from '../../server/pruning/unit-statistics.ts';
import { createRng } from '../../shared/util/rng.ts';

/**
 * 3 inputs → 8 ReLU → 5 ReLU → 2. Layer 0: unit 2 is nearly constant (relu(1 + 1e-4·x0): mean ~1,
 * std ~1e-4), unit 5 is a dead ReLU (always 0). Layer 1: unit 1 is dead, unit 3 is exactly constant (0.75).
 */
function network(seed: number): DenseNetwork {
  const rng = createRng(seed);
  const dense = (inputs: number, units: number, activation: 'relu' | 'linear') => ({
    inputs,
    units,
    weights: Float32Array.from({ length: inputs * units }, () => rng() * 2 - 1),
    bias: Float32Array.from({ length: units }, () => rng() - 0.5),
    activation,
  });
  const layers = [dense(3, 8, 'relu'), dense(8, 5, 'relu'), dense(5, 2, 'linear')];
  const setUnit = (l: number, unit: number, weights: number[], bias: number) => {
    const layer = layers[l]!;
    for (let i = 0; i < layer.inputs; i++) layer.weights[i * layer.units + unit] = weights[i] ?? 0;
    layer.bias[unit] = bias;
  };
  setUnit(0, 2, [1e-4], 1);
  setUnit(0, 5, [0.01, -0.01, 0.01], -50);
  setUnit(1, 1, [], -3);
  setUnit(1, 3, [], 0.75);
  return { inputMean: new Float32Array(3), inputScale: new Float32Array(3).fill(1), layers };
}

function inputs(rows: number, seed: number): tf.Tensor2D {
  const rng = createRng(seed);
  return tf.tensor2d(Float32Array.from({ length: rows * 3 }, () => rng() * 4 - 2), [rows, 3]);
}

/** The reference: every hidden layer's activations over all rows from tfjs, their mean and population std in float64. */
function reference(net: DenseNetwork, x: tf.Tensor2D): { mean: Float64Array; std: Float64Array }[] {
  const rows = x.shape[0];
  const activations = tf.tidy(() => {
    let a: tf.Tensor2D = x;
    return net.layers.slice(0, -1).map((layer) => {
      a = tf.relu(tf.add(tf.matMul(a, tf.tensor2d(layer.weights, [layer.inputs, layer.units])), tf.tensor1d(layer.bias))) as tf.Tensor2D;
      return a.dataSync();
    });
  });
  return activations.map((values, l) => {
    const units = net.layers[l]!.units;
    const mean = new Float64Array(units);
    const std = new Float64Array(units);
    for (let r = 0; r < rows; r++) for (let j = 0; j < units; j++) mean[j]! += values[r * units + j]!;
    for (let j = 0; j < units; j++) mean[j]! /= rows;
    for (let r = 0; r < rows; r++) for (let j = 0; j < units; j++) std[j]! += (values[r * units + j]! - mean[j]!) ** 2;
    for (let j = 0; j < units; j++) std[j] = Math.sqrt(std[j]! / rows);
    return { mean, std };
  });
}

test('statistics over many batches equal a float64 reference, with a nearly constant and a dead unit', async () => {
  await initTfjs();
  const net = network(11);
  const rows = 1000;
  const x = inputs(rows, 12);
  const expected = reference(net, x);
  // The nearly constant unit is what the test is about: check the construction did make one.
  assert.ok(Math.abs(expected[0]!.mean[2]! - 1) < 1e-3 && expected[0]!.std[2]! > 1e-5 && expected[0]!.std[2]! < 1e-3, `layer 0 unit 2: mean ${expected[0]!.mean[2]}, std ${expected[0]!.std[2]}`);
  const tensorsBefore = tf.memory().numTensors;
  for (const batchRows of [1, 7, 64, 97, 333, 999, rows, 4096, undefined]) {
    const stats = measureHiddenUnits(net, x, batchRows);
    assert.equal(stats.length, 2);
    stats.forEach(({ mean, std }, l) => {
      const ref = expected[l]!;
      assert.ok(mean instanceof Float32Array && std instanceof Float32Array, 'float32 statistics, as before');
      assert.equal(mean.length, ref.mean.length);
      for (let j = 0; j < mean.length; j++) {
        const where = `batch ${batchRows}, layer ${l}, unit ${j}: mean ${mean[j]} vs ${ref.mean[j]}, std ${std[j]} vs ${ref.std[j]}`;
        assert.ok(Math.abs(mean[j]! - ref.mean[j]!) <= 3e-7 * Math.abs(ref.mean[j]!) + 1e-3 * ref.std[j]!, where);
        assert.ok(Math.abs(std[j]! - ref.std[j]!) <= 1e-5 * ref.std[j]!, where);
      }
    });
    // The dead and the constant units come out exactly.
    assert.equal(stats[0]!.mean[5], 0);
    assert.equal(stats[0]!.std[5], 0);
    assert.equal(stats[1]!.mean[1], 0);
    assert.equal(stats[1]!.std[1], 0);
    assert.equal(stats[1]!.mean[3], 0.75);
    assert.equal(stats[1]!.std[3], 0);
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor is left behind');
  x.dispose();
});

test('memory stays bounded by the batch, not the number of rows', async () => {
  await initTfjs();
  assert.ok(Number.isInteger(MEASURE_BATCH_ROWS) && MEASURE_BATCH_ROWS >= 1024, `MEASURE_BATCH_ROWS ${MEASURE_BATCH_ROWS}`);
  const rng = createRng(5);
  const units = 256;
  const dense = (inputs: number) => ({
    inputs,
    units,
    weights: Float32Array.from({ length: inputs * units }, () => rng() - 0.5),
    bias: Float32Array.from({ length: units }, () => rng() - 0.5),
    activation: 'relu' as const,
  });
  const net: DenseNetwork = {
    inputMean: new Float32Array(3),
    inputScale: new Float32Array(3).fill(1),
    layers: [dense(3), dense(units), { ...dense(units), units: 1, weights: new Float32Array(units), bias: new Float32Array(1), activation: 'linear' }],
  };
  const rows = 4096;
  const x = inputs(rows, 6);
  const oneLayerOfActivations = rows * units * 4;
  const bytesBefore = tf.memory().numBytes;
  const profile = await tf.profile(() => {
    measureHiddenUnits(net, x, 128);
  });
  const peak = profile.peakBytes - bytesBefore;
  assert.ok(peak < oneLayerOfActivations / 2, `peak ${peak} bytes above the inputs: one layer's activations over all rows are ${oneLayerOfActivations}`);
  x.dispose();
});

test('a batch size must be a positive integer', async () => {
  await initTfjs();
  const x = inputs(4, 1);
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => measureHiddenUnits(network(1), x, bad), /batchRows/);
  x.dispose();
});
