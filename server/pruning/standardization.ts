import type { Task } from '../../shared/data/dataset.ts';
import { UserError } from '../../shared/util/errors.ts';
import type { Scaling } from '../../shared/model/tfjs-convert.ts';

/**
 * A standard deviation above this is always the scale. Below it, a spread is the scale only when
 * it is real rather than float64 rounding noise of equal values (the mean of equal values is not
 * always that value): at least TINY_SPREAD_RELATIVE of the mean's size, and no smaller than
 * MIN_TINY_SCALE, so the first layer's weights divided by it (model.onnx folds the scale into
 * them) stay far inside float32. Otherwise the column counts as constant: scale 1.
 */
const SCALE_THRESHOLD = 1e-12;
const TINY_SPREAD_RELATIVE = 1e-6;
const MIN_TINY_SCALE = 1e-30;

/** The scale of a column (or target) of this mean and population standard deviation. */
export function scaleOf(mean: number, std: number): number {
  if (std > SCALE_THRESHOLD) return std;
  // A column of values around 1e-20 (SI units) used to count as constant: the network never saw it,
  // and a regression target in such units got predictions of the order of 1 (R² of -1e58).
  return std >= MIN_TINY_SCALE && std > TINY_SPREAD_RELATIVE * Math.abs(mean) ? std : 1;
}

/** Values that differ, yet scaleOf takes them for a constant: the models see one value whatever the row. */
const variesUnseen = (values: readonly number[]) => !values.every((value) => value === values[0]) && takenForConstant(values);
const TOO_LITTLE = `too little to standardize (a standard deviation under ${MIN_TINY_SCALE}, or at most ${SCALE_THRESHOLD} and under a millionth of the mean)`;
const SCALE_UP = 'up (multiply by a power of ten) or subtract an offset before pruning';

const namedList = (names: readonly string[]) => names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');

/**
 * Refuses training data the models could learn nothing from, once it is split: a regression label
 * whose training values scaleOf takes for a constant (the network learnt to output about zero,
 * and its predictions came out 1e31 times the label's size, R² -1e64), or features of which not
 * one varies as the models see them (every one taken for a constant: a model that gave every row
 * the same answer was shipped). The data set's own checks (dataset.ts) refuse a label or features
 * that hold one value; these are those whose values differ by too little.
 */
export function assertLearnable(x: readonly (readonly number[])[], y: readonly number[], task: Task, featureNames: readonly string[], labelName: string): void {
  if (task === 'regression' && variesUnseen(y)) {
    throw new UserError(`the regression label ${JSON.stringify(labelName)} varies ${TOO_LITTLE} over the training rows: no model can learn it; scale it ${SCALE_UP}`);
  }
  const inFloat32 = task === 'regression' ? new Set(y.map(Math.fround)) : undefined;
  if (inFloat32 && inFloat32.size === 1 && new Set(y).size > 1) {
    // Values float32 cannot tell apart at their size (100 beside 100.0000001, seconds since 1970
    // spread over one second): model.onnx ends in `+ label mean` in float32, so every device
    // prediction comes out that one value (a model of R² 0 was shipped, scored on float64 numbers
    // no device computes). Labels float32 holds coarsely, in a few values, get a warning (dataset.ts).
    throw new UserError(
      `the regression label ${JSON.stringify(labelName)} varies too little for its size to survive float32, which devices compute the model in: its ${new Set(y).size} values over the training rows all round to ${[...inFloat32][0]}, ` +
        'so every prediction on a device would be that value; subtract an offset (such as the column\'s minimum) before pruning',
    );
  }
  const width = x[0]?.length ?? 0;
  if (width > 0 && ignoredColumns(x).length === width) {
    const varying = featureNames.filter((_, c) => variesUnseen(x.map((row) => row[c]!))).map((name) => JSON.stringify(name));
    throw new UserError(`no feature varies as the models see it: ${namedList(varying)} ${varying.length === 1 ? 'varies' : 'vary'} ${TOO_LITTLE} over the training rows, and the others hold one value; there is nothing to learn the label from; scale ${varying.length === 1 ? 'it' : 'them'} ${SCALE_UP}`);
  }
}

/**
 * A warning naming the feature columns of the training split whose values differ but which
 * scaleOf takes for constants (a spread under MIN_TINY_SCALE, or under TINY_SPREAD_RELATIVE of
 * the mean): the models see one value for them whatever the row, so such a feature is ignored.
 * Without it, the model came out worse than the data allows and nothing said why. Empty when there
 * is none. (A label, or every feature, that varies this little is refused: assertLearnable.)
 */
export function unstandardizableWarnings(x: readonly (readonly number[])[], featureNames: readonly string[]): string[] {
  const names = featureNames.filter((_, c) => variesUnseen(x.map((row) => row[c]!))).map((name) => `feature ${JSON.stringify(name)}`);
  if (names.length === 0) return [];
  const one = names.length === 1;
  return [
    `${namedList(names)} ${one ? 'varies' : 'vary'} ${TOO_LITTLE}: the models take ${one ? 'it' : 'them'} for a constant, so ${one ? 'it is' : 'they are'} ignored; scale ${one ? 'it' : 'them'} ${SCALE_UP}`,
  ];
}

/**
 * The feature columns every model must ignore: those whose training values standardize to one
 * value (a constant, or a spread scaleOf takes for rounding noise). Training learns nothing about
 * them, yet the weights that read them were left to the initialisation and the L1 penalty's
 * oscillation around zero: a device sending another value than the training one (a sensor fixed
 * in every training row, a pixel blank in every training image) moved the predictions, and a
 * large one took them over. trainModel holds these inputs' weights at exactly zero.
 */
export function ignoredColumns(x: readonly (readonly number[])[]): number[] {
  const width = x[0]?.length ?? 0;
  return Array.from({ length: width }, (_, c) => c).filter((c) => takenForConstant(x.map((row) => row[c]!)));
}

/** Whether scaleOf takes these values for a constant (scale 1 for a spread at or under SCALE_THRESHOLD): they standardize to one value. */
function takenForConstant(values: readonly number[]): boolean {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return std <= SCALE_THRESHOLD && scaleOf(mean, std) === 1;
}

/**
 * Per-feature mean and scale from the training split. A constant feature gets scale 1, so it
 * standardizes to zero instead of dividing by zero (see scaleOf). Regression targets are
 * standardized too.
 */
export function fitScaling(x: readonly (readonly number[])[], y: readonly number[], task: Task): Scaling {
  const width = x[0]!.length;
  const mean = new Float64Array(width);
  const squares = new Float64Array(width);
  for (const row of x) row.forEach((value, i) => (mean[i]! += value));
  mean.forEach((_, i) => (mean[i]! /= x.length));
  for (const row of x) row.forEach((value, i) => (squares[i]! += (value - mean[i]!) ** 2));
  const scale = Float32Array.from(squares, (sum, i) => scaleOf(mean[i]!, Math.sqrt(sum / x.length)));
  const scaling: Scaling = { inputMean: Float32Array.from(mean), inputScale: scale };
  if (task === 'regression') {
    const targetMean = y.reduce((a, b) => a + b, 0) / y.length;
    const targetStd = Math.sqrt(y.reduce((a, b) => a + (b - targetMean) ** 2, 0) / y.length);
    scaling.target = { mean: targetMean, scale: scaleOf(targetMean, targetStd) };
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
