import type { DenseLayer, DenseNetwork } from '../../shared/model/dense-network.ts';

/**
 * The transfer step: a smaller network made of the kept hidden units, with their weights and
 * biases copied from the original. When `droppedMeans` is given (ODF2NNA), each dropped unit's
 * mean activation times its outgoing weights is folded into the next layer's bias, so the small
 * network computes nearly what the large one did before any retraining.
 */
export function transferUnits(
  network: DenseNetwork,
  keep: readonly (readonly number[])[],
  droppedMeans?: readonly Float32Array[],
): DenseNetwork {
  const hidden = network.layers.length - 1;
  if (keep.length !== hidden) throw new Error(`expected kept units for ${hidden} hidden layers, got ${keep.length}`);
  const layers: DenseLayer[] = network.layers.map((layer, l) => {
    const rows = l === 0 ? range(layer.inputs) : keep[l - 1]!;
    const cols = l < hidden ? keep[l]! : range(layer.units);
    const bias = Float64Array.from(layer.bias);
    if (droppedMeans && l > 0) {
      const kept = new Set(rows);
      const means = droppedMeans[l - 1]!;
      for (let j = 0; j < layer.inputs; j++) {
        if (kept.has(j) || means[j] === 0) continue;
        for (let k = 0; k < layer.units; k++) bias[k]! += means[j]! * layer.weights[j * layer.units + k]!;
      }
    }
    const weights = new Float32Array(rows.length * cols.length);
    rows.forEach((j, r) => cols.forEach((k, c) => (weights[r * cols.length + c] = layer.weights[j * layer.units + k]!)));
    return {
      inputs: rows.length,
      units: cols.length,
      weights,
      bias: Float32Array.from(cols, (k) => bias[k]!),
      activation: layer.activation,
    };
  });
  return { ...network, layers };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
