/**
 * The framework-neutral description of a dense feed-forward network, as fleetprune ships it.
 * Training code (tfjs) produces it; the ONNX exporter, the artifact manifest and the
 * reference forward pass consume it.
 */
export type Activation = 'relu' | 'softmax' | 'linear';

export interface DenseLayer {
  inputs: number;
  units: number;
  /** Row-major [inputs][units], the same layout as a tfjs Dense kernel. */
  weights: Float32Array;
  bias: Float32Array;
  activation: Activation;
}

export interface DenseNetwork {
  /** Raw features are standardized as (x - mean) / scale before the first layer. */
  inputMean: Float32Array;
  inputScale: Float32Array;
  layers: DenseLayer[];
  /** Regression only: the network predicts a standardized target, de-standardized as y * scale + mean. */
  target?: { mean: number; scale: number };
}

/** Hidden and output unit counts, e.g. [128, 128, 128, 3]. */
export function layerSizes(network: DenseNetwork): number[] {
  return network.layers.map((layer) => layer.units);
}

/** Trainable parameters: every weight and bias of every dense layer. */
export function parameterCount(network: DenseNetwork): number {
  return network.layers.reduce((sum, layer) => sum + layer.inputs * layer.units + layer.units, 0);
}

/** Floating-point operations per sample: a multiply and an add per weight, plus the bias adds. */
export function flopsPerSample(network: DenseNetwork): number {
  return network.layers.reduce((sum, layer) => sum + 2 * layer.inputs * layer.units + layer.units, 0);
}

/** A reference forward pass in float64 arithmetic; raw features in, predictions out. */
export function forward(network: DenseNetwork, rows: readonly (readonly number[])[]): number[][] {
  return rows.map((row) => {
    let values = row.map((value, i) => (value - network.inputMean[i]!) / network.inputScale[i]!);
    for (const layer of network.layers) {
      const next = new Array<number>(layer.units);
      for (let j = 0; j < layer.units; j++) {
        let sum = layer.bias[j]!;
        for (let i = 0; i < layer.inputs; i++) sum += values[i]! * layer.weights[i * layer.units + j]!;
        next[j] = sum;
      }
      values = activate(next, layer.activation);
    }
    if (network.target) values = values.map((value) => value * network.target!.scale + network.target!.mean);
    return values;
  });
}

function activate(values: number[], activation: Activation): number[] {
  if (activation === 'relu') return values.map((value) => (value > 0 ? value : 0));
  if (activation === 'linear') return values;
  const max = Math.max(...values);
  const exps = values.map((value) => Math.exp(value - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((value) => value / total);
}

/** Checks that consecutive layers fit together and arrays have the sizes they claim. */
export function validateNetwork(network: DenseNetwork): void {
  const inputs = network.inputMean.length;
  if (network.inputScale.length !== inputs) throw new Error('inputScale and inputMean differ in length');
  let width = inputs;
  network.layers.forEach((layer, index) => {
    if (layer.inputs !== width) throw new Error(`layer ${index} takes ${layer.inputs} inputs but receives ${width}`);
    if (layer.weights.length !== layer.inputs * layer.units) throw new Error(`layer ${index} has a wrongly sized kernel`);
    if (layer.bias.length !== layer.units) throw new Error(`layer ${index} has a wrongly sized bias`);
    width = layer.units;
  });
}
