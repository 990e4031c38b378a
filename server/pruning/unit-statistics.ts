import { tf } from '../../shared/model/tfjs-backend.ts';
import type { DenseNetwork } from '../../shared/model/dense-network.ts';

/** Per hidden layer: each unit's activation mean and standard deviation over a data set. */
export interface UnitStatistics {
  mean: Float32Array;
  std: Float32Array;
}

/** Rows per pass: the activations held at once are a few float32 matrices of this many rows × a layer's units. */
export const MEASURE_BATCH_ROWS = 4096;

/**
 * Runs the standardized inputs through the hidden layers and measures every unit's activation:
 * its mean and population standard deviation. ODF2NNA calls a unit's standard deviation its
 * variability: a unit that barely varies carries almost no information forward and can be
 * replaced by its mean.
 *
 * The rows go through `batchRows` at a time, so memory does not grow with the data set. Per batch
 * and layer tfjs computes the batch mean m and, about it, the sum of deviations and of squared
 * deviations; in float64 the deviation sum corrects m's float32 rounding (the corrected two-pass
 * formula), and Chan et al.'s parallel update combines the batches. The mean returned is the
 * rows-weighted average of the batch means m: with one batch, exactly tf.moments' mean.
 */
export function measureHiddenUnits(
  network: DenseNetwork,
  standardizedX: tf.Tensor2D,
  batchRows: number = MEASURE_BATCH_ROWS,
): UnitStatistics[] {
  if (!Number.isInteger(batchRows) || batchRows < 1) throw new Error(`batchRows must be a positive integer, not ${batchRows}`);
  const hidden = network.layers.slice(0, -1);
  const rows = standardizedX.shape[0];
  const meanSum = hidden.map((layer) => new Float64Array(layer.units)); // Σ batch rows × batch mean m
  const mean = hidden.map((layer) => new Float64Array(layer.units)); // the float64 mean of the rows so far
  const m2 = hidden.map((layer) => new Float64Array(layer.units)); // their Σ squared deviations from it
  const params = tf.tidy(() => hidden.map((layer) => [tf.tensor2d(layer.weights, [layer.inputs, layer.units]), tf.tensor1d(layer.bias)] as const));
  try {
    for (let start = 0, seen = 0; start < rows; start += batchRows) {
      const n = Math.min(batchRows, rows - start);
      const total = seen + n;
      let activation = standardizedX.slice([start, 0], [n, -1]);
      try {
        params.forEach(([kernel, bias], l) => {
          const input = activation;
          activation = tf.tidy(() => tf.relu(tf.add(tf.matMul(input, kernel), bias)) as tf.Tensor2D);
          input.dispose();
          const [batchMean, deviationSum, squaredDeviationSum] = tf.tidy(() => {
            // Units × rows: tfjs (wasm) transposes for every reduction over rows; this is one transpose for three.
            const unitsByRows = tf.transpose(activation);
            const batchMean = tf.mean(unitsByRows, 1, true);
            const deviation = tf.sub(unitsByRows, batchMean);
            return [batchMean.dataSync(), tf.sum(deviation, 1).dataSync(), tf.sum(tf.square(deviation), 1).dataSync()] as const;
          });
          for (let j = 0; j < batchMean.length; j++) {
            meanSum[l]![j]! += n * batchMean[j]!;
            const shift = deviationSum[j]! / n; // the batch's exact mean is batchMean + shift
            const batchM2 = Math.max(0, squaredDeviationSum[j]! - shift * deviationSum[j]!);
            const delta = batchMean[j]! + shift - mean[l]![j]!;
            mean[l]![j]! += (delta * n) / total;
            m2[l]![j]! += batchM2 + (delta * delta * seen * n) / total;
          }
        });
      } finally {
        activation.dispose();
      }
      seen = total;
    }
  } finally {
    tf.dispose(params.flat());
  }
  return hidden.map((_, l) => ({
    mean: Float32Array.from(meanSum[l]!, (v) => v / rows),
    std: Float32Array.from(m2[l]!, (v) => Math.sqrt(v / rows)),
  }));
}
