import { tf } from '../../shared/model/tfjs-backend.ts';
import type { Task } from '../../shared/data/dataset.ts';
import type { Split } from '../../shared/data/split.ts';
import type { DenseNetwork } from '../../shared/model/dense-network.ts';
import { toDenseNetwork, toTfjsModel, type Scaling } from '../../shared/model/tfjs-convert.ts';
import { createRng, shuffled } from '../../shared/util/rng.ts';
import { streamSeed } from './seeds.ts';
import { ignoredColumns, standardizeRows } from './standardization.ts';

/** One split as tensors on standardized inputs (and standardized targets for regression). */
export interface TensorSplit {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  /** The original labels (class index or raw target) for scoring. */
  labels: number[];
}

export interface TrainingData {
  task: Task;
  inputs: number;
  outputs: number;
  scaling: Scaling;
  /** Feature columns constant over the training split (ignoredColumns): their weights stay zero. */
  ignoredInputs: readonly number[];
  train: TensorSplit;
  validation: TensorSplit;
  test: TensorSplit;
}

/** What training reads: the network's shape and scaling, the ignored inputs, and the training and validation tensors. */
export interface TrainingSet {
  task: Task;
  inputs: number;
  outputs: number;
  scaling: Scaling;
  ignoredInputs: readonly number[];
  train: Pick<TensorSplit, 'x' | 'y'>;
  validation: Pick<TensorSplit, 'x' | 'y'>;
}

/** The network a training starts from: given weights, or a new network initialised from a seed. */
export type TrainingStart =
  | { kind: 'network'; network: DenseNetwork }
  | { kind: 'fresh'; hidden: readonly number[]; seed: number; l1: KernelL1 };

/** What a training trained: the network with its best weights, and trainModel's account of the run. */
export interface TrainingOutcome {
  network: DenseNetwork;
  epochs: number;
  bestValidationLoss: number;
  /** The validation loss of the weights training started from (before its first epoch). */
  startValidationLoss: number;
  /** Whether an epoch lowered the validation loss: else the weights are the ones training started from. */
  improved: boolean;
}

export interface TrainConfig {
  maxEpochs: number;
  learningRate: number;
  /** Stop after this many epochs without a better validation loss, then restore the best weights. */
  patience: number;
  batchSize: number;
  seed: number;
}

export function prepareTrainingData(
  task: Task,
  outputs: number,
  scaling: Scaling,
  splits: { train: Split; validation: Split; test: Split },
): TrainingData {
  const inputs = scaling.inputMean.length;
  const toTensors = (split: Split): TensorSplit => ({
    x: tf.tensor2d(standardizeRows(split.x, scaling), [split.x.length, inputs]),
    y:
      task === 'classification'
        ? tf.tidy(() => tf.oneHot(tf.tensor1d(split.y, 'int32'), outputs).toFloat() as tf.Tensor2D)
        : tf.tensor2d(split.y.map((v) => (v - scaling.target!.mean) / scaling.target!.scale), [split.y.length, 1]),
    labels: split.y.slice(),
  });
  return {
    task,
    inputs,
    outputs,
    scaling,
    ignoredInputs: ignoredColumns(splits.train.x),
    train: toTensors(splits.train),
    validation: toTensors(splits.validation),
    test: toTensors(splits.test),
  };
}

export function disposeTrainingData(data: TrainingData): void {
  for (const split of [data.train, data.validation, data.test]) tf.dispose([split.x, split.y]);
}

/** L1 penalties on the hidden kernels: the first hidden layer (which reads the features) and the rest. */
export interface KernelL1 {
  input: number;
  hidden: number;
}

export const NO_L1: KernelL1 = { input: 0, hidden: 0 };

/**
 * A dense network: `hidden` ReLU layers, then softmax (classification) or linear (regression).
 * The L1 penalties drive the weights a unit does not need towards zero, so units the task does
 * not use end up barely varying, which is what ODF2NNA's variability test detects.
 */
export function createDenseModel(
  inputs: number,
  hidden: readonly number[],
  outputs: number,
  task: Task,
  seed: number,
  l1: KernelL1 = NO_L1,
): tf.Sequential {
  const model = tf.sequential();
  hidden.forEach((units, index) => {
    const penalty = index === 0 ? l1.input : l1.hidden;
    model.add(
      tf.layers.dense({
        units,
        activation: 'relu',
        inputShape: index === 0 ? [inputs] : undefined,
        kernelInitializer: tf.initializers.heNormal({ seed: streamSeed(seed, `layer/${index}`) }),
        kernelRegularizer: penalty > 0 ? tf.regularizers.l1({ l1: penalty }) : undefined,
        name: `dense_${index}`,
      }),
    );
  });
  model.add(
    tf.layers.dense({
      units: outputs,
      activation: task === 'classification' ? 'softmax' : 'linear',
      inputShape: hidden.length === 0 ? [inputs] : undefined,
      kernelInitializer: tf.initializers.glorotUniform({ seed: streamSeed(seed, `layer/${hidden.length}`) }),
      name: `dense_${hidden.length}`,
    }),
  );
  return model;
}

/**
 * Adam with early stopping on the validation loss. Each epoch is shuffled by a seeded RNG, so a
 * run is reproducible; the weights of the best validation epoch are restored at the end.
 */
export async function trainModel(
  model: tf.LayersModel,
  data: TrainingSet,
  config: TrainConfig,
  onEpoch?: (epoch: number, validationLoss: number) => void,
): Promise<{ epochs: number; bestValidationLoss: number; startValidationLoss: number; improved: boolean }> {
  const optimizer = tf.train.adam(config.learningRate);
  model.compile({
    optimizer,
    loss: data.task === 'classification' ? 'categoricalCrossentropy' : 'meanSquaredError',
  });
  const rng = createRng(config.seed);
  const rows = Array.from({ length: data.train.x.shape[0] }, (_, i) => i);
  zeroInputWeights(model, data.ignoredInputs);
  const start = validationLoss(model, data);
  let best = start;
  let bestWeights = model.getWeights().map((w) => w.clone());
  let sinceBest = 0;
  let epoch = 0;
  while (epoch < config.maxEpochs && sinceBest < config.patience) {
    epoch++;
    const order = tf.tensor1d(shuffled(rows, rng), 'int32');
    const x = tf.gather(data.train.x, order);
    const y = tf.gather(data.train.y, order);
    await model.fit(x, y, { epochs: 1, batchSize: config.batchSize, shuffle: false, verbose: 0 });
    tf.dispose([order, x, y]);
    zeroInputWeights(model, data.ignoredInputs);
    // fit() settles in microtasks only: without a turn of the event loop per epoch, Ctrl-C (its
    // handler), timers (progress redraws) and messages would wait until training ended.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const loss = validationLoss(model, data);
    onEpoch?.(epoch, loss);
    if (loss < best - 1e-6) {
      best = loss;
      tf.dispose(bestWeights);
      bestWeights = model.getWeights().map((w) => w.clone());
      sinceBest = 0;
    } else {
      sinceBest++;
    }
  }
  model.setWeights(bestWeights);
  tf.dispose(bestWeights);
  optimizer.dispose();
  return { epochs: epoch, bestValidationLoss: best, startValidationLoss: start, improved: best !== start };
}

/** Builds the model `start` names, trains it (trainModel) and returns it as a network; the model is disposed. */
export async function trainNetwork(start: TrainingStart, data: TrainingSet, config: TrainConfig): Promise<TrainingOutcome> {
  const model =
    start.kind === 'network'
      ? toTfjsModel(start.network)
      : createDenseModel(data.inputs, start.hidden, data.outputs, data.task, start.seed, start.l1);
  try {
    const run = await trainModel(model, data, config);
    return { network: toDenseNetwork(model, data.scaling), ...run };
  } finally {
    model.dispose();
  }
}

/**
 * Sets to zero the first layer's weights from the `inputs` columns (ignoredColumns): the model
 * then ignores those features whatever their value. A no-op without any.
 */
export function zeroInputWeights(model: tf.LayersModel, inputs: readonly number[]): void {
  if (inputs.length === 0) return;
  const first = model.layers[0]!;
  const [kernel, ...rest] = first.getWeights();
  const width = kernel!.shape[0]!;
  const keep = new Float32Array(width).fill(1);
  for (const column of inputs) keep[column] = 0;
  // + 0 turns the -0 of a negative weight times 0 into 0: the weights file says plainly zero.
  const masked = tf.tidy(() => kernel!.mul(tf.tensor2d(keep, [width, 1])).add(0));
  first.setWeights([masked, ...rest]);
  masked.dispose();
}

function validationLoss(model: tf.LayersModel, data: TrainingSet): number {
  return tf.tidy(() => {
    const result = model.evaluate(data.validation.x, data.validation.y, { batchSize: 1024 });
    return (Array.isArray(result) ? result[0]! : result).dataSync()[0]!;
  });
}

/** Predictions in label units (class probabilities, or de-standardized regression targets). */
export function predictRows(model: tf.LayersModel, x: tf.Tensor2D, scaling: Scaling): number[][] {
  const rows = tf.tidy(() => (model.predict(x, { batchSize: 1024 }) as tf.Tensor2D).arraySync());
  if (!scaling.target) return rows;
  const { mean, scale } = scaling.target;
  return rows.map((row) => row.map((value) => value * scale + mean));
}
