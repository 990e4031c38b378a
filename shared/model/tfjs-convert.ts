import { tf } from './tfjs-backend.ts';
import type { Activation, DenseNetwork } from './dense-network.ts';

/** The standardization and output scaling that surround a tfjs model trained on standardized data. */
export interface Scaling {
  inputMean: Float32Array;
  inputScale: Float32Array;
  target?: { mean: number; scale: number };
}

/** Reads the weights of a Sequential stack of Dense layers into a DenseNetwork. */
export function toDenseNetwork(model: tf.LayersModel, scaling: Scaling): DenseNetwork {
  const layers = model.layers.map((layer, index) => {
    const config = layer.getConfig() as { units?: number; activation?: string };
    const [kernel, bias] = layer.getWeights();
    if (!kernel || !bias || kernel.shape.length !== 2 || config.units === undefined) {
      throw new Error(`layer ${index} (${layer.getClassName()}) is not a Dense layer with a bias`);
    }
    return {
      inputs: kernel.shape[0]!,
      units: kernel.shape[1]!,
      weights: Float32Array.from(kernel.dataSync()),
      bias: Float32Array.from(bias.dataSync()),
      activation: (config.activation ?? 'linear') as Activation,
    };
  });
  return { inputMean: scaling.inputMean, inputScale: scaling.inputScale, layers, target: scaling.target };
}

/**
 * Builds a tfjs Sequential model (on standardized inputs) holding a DenseNetwork's weights. The
 * layers start as zeros, since setWeights replaces them at once: tfjs's default random initializer
 * took 2-3 s on a 4096-wide network (and draws only its own unseeded generator, which nothing reads).
 */
export function toTfjsModel(network: DenseNetwork): tf.Sequential {
  const model = tf.sequential();
  network.layers.forEach((layer, index) => {
    model.add(
      tf.layers.dense({
        units: layer.units,
        activation: layer.activation,
        inputShape: index === 0 ? [layer.inputs] : undefined,
        kernelInitializer: 'zeros',
        biasInitializer: 'zeros',
        name: `dense_${index}`,
      }),
    );
  });
  model.layers.forEach((tfLayer, index) => {
    const layer = network.layers[index]!;
    const weights = [tf.tensor2d(layer.weights, [layer.inputs, layer.units]), tf.tensor1d(layer.bias)];
    tfLayer.setWeights(weights);
    tf.dispose(weights);
  });
  return model;
}
