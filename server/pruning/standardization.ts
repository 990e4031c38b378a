import type { Task } from '../../shared/data/dataset.ts';
import type { Scaling } from '../../shared/model/tfjs-convert.ts';

/**
 * Per-feature mean and scale from the training split. A constant feature gets scale 1, so it
 * standardizes to zero instead of dividing by zero. Regression targets are standardized too.
 */
export function fitScaling(x: readonly (readonly number[])[], y: readonly number[], task: Task): Scaling {
  const width = x[0]!.length;
  const mean = new Float64Array(width);
  const squares = new Float64Array(width);
  for (const row of x) row.forEach((value, i) => (mean[i]! += value));
  mean.forEach((_, i) => (mean[i]! /= x.length));
  for (const row of x) row.forEach((value, i) => (squares[i]! += (value - mean[i]!) ** 2));
  const scale = Float32Array.from(squares, (sum) => {
    const std = Math.sqrt(sum / x.length);
    return std > 1e-12 ? std : 1;
  });
  const scaling: Scaling = { inputMean: Float32Array.from(mean), inputScale: scale };
  if (task === 'regression') {
    const targetMean = y.reduce((a, b) => a + b, 0) / y.length;
    const targetStd = Math.sqrt(y.reduce((a, b) => a + (b - targetMean) ** 2, 0) / y.length);
    scaling.target = { mean: targetMean, scale: targetStd > 1e-12 ? targetStd : 1 };
  }
  return scaling;
}

export function standardizeRows(x: readonly (readonly number[])[], scaling: Scaling): Float32Array {
  const width = scaling.inputMean.length;
  const out = new Float32Array(x.length * width);
  x.forEach((row, r) => {
    for (let i = 0; i < width; i++) out[r * width + i] = (row[i]! - scaling.inputMean[i]!) / scaling.inputScale[i]!;
  });
  return out;
}
