import { tf } from '../../shared/model/tfjs-backend.ts';
import type { DenseNetwork } from '../../shared/model/dense-network.ts';

/** Per hidden layer: each unit's activation mean and standard deviation over a data set. */
export interface UnitStatistics {
  mean: Float32Array;
  std: Float32Array;
}

/**
 * Runs the standardized inputs through the hidden layers and measures every unit's activation.
 * ODF2NNA calls a unit's standard deviation its variability: a unit that barely varies carries
 * almost no information forward and can be replaced by its mean.
 */
export function measureHiddenUnits(network: DenseNetwork, standardizedX: tf.Tensor2D): UnitStatistics[] {
  const stats: UnitStatistics[] = [];
  tf.tidy(() => {
    let activation: tf.Tensor = standardizedX;
    for (const layer of network.layers.slice(0, -1)) {
      const kernel = tf.tensor2d(layer.weights, [layer.inputs, layer.units]);
      activation = tf.relu(tf.add(tf.matMul(activation as tf.Tensor2D, kernel), tf.tensor1d(layer.bias)));
      const { mean, variance } = tf.moments(activation, 0);
      stats.push({ mean: Float32Array.from(mean.dataSync()), std: Float32Array.from(tf.sqrt(variance).dataSync()) });
    }
  });
  return stats;
}
