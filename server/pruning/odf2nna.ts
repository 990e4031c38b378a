import { tf } from '../../shared/model/tfjs-backend.ts';
import type { Dataset } from '../../shared/data/dataset.ts';
import { splitDataset, thinClasses } from '../../shared/data/split.ts';
import {
  flopsPerSample,
  layerSizes,
  parameterCount,
  type DenseNetwork,
} from '../../shared/model/dense-network.ts';
import { toDenseNetwork, toTfjsModel, type Scaling } from '../../shared/model/tfjs-convert.ts';
import { assertTrainableSize, optionsInEffect, retrainEpochsOf, retrainLearningRateOf, type PruneOptions } from './options.ts';
import { FLEETPRUNE_VERSION } from '../../shared/cli/version.ts';
import { buildCommit } from '../../shared/cli/build-commit.ts';

/** What ran: fleetprune's version, and the commit of the checkout when it ran from one. */
function toolOf(commit: string | null): PruneReport['tool'] {
  return { name: 'fleetprune', version: FLEETPRUNE_VERSION, ...(commit ? { commit } : {}) };
}
import type { PruneReport, SweepEntry } from './report.ts';
import { scorePredictions, scoreValue, withinTolerance, type Score, type Tolerance } from '../../shared/model/scoring.ts';
import { assertLearnable, fitScaling, unstandardizableWarnings } from './standardization.ts';
import { UserError } from '../../shared/util/errors.ts';
import {
  createDenseModel,
  disposeTrainingData,
  predictRows,
  prepareTrainingData,
  trainModel,
  trainNetwork,
  type KernelL1,
  type TrainingStart,
  type TrainConfig,
  type TrainingData,
} from './training.ts';
import { TrainingThread, trainingThreadCount } from './training-thread.ts';
import { runSeeds } from './seeds.ts';
import { transferUnits } from './transfer.ts';
import { measureHiddenUnits } from './unit-statistics.ts';
import { selectByOutgoingL1, selectUsefulUnits } from './useful-units.ts';

import type { Phase, ProgressEvent } from './progress-events.ts';

export { PHASES, type Phase, type ProgressEvent } from './progress-events.ts';

export interface TrainedNetwork {
  network: DenseNetwork;
  model: tf.Sequential;
}

/** The scores of a model's retrained weights. */
interface RetrainedScores {
  validation: Score;
  validationLoss: number;
  /** The validation loss of the transferred weights retraining started from. */
  validationLossBefore: number;
  test: Score;
  /** Whether the retrained weights, and the transferred ones they started from, are within tolerance on validation. */
  within: boolean;
  withinBefore: boolean;
}

/** Which weights an ε's model keeps, with their scores, and what retraining scored. */
interface Kept {
  weights: 'retrained' | 'transferred';
  kept: { validation: Score; validationLoss: number; test: Score };
  retrained: RetrainedScores;
}

/**
 * A trained general model, kept to prune again at other settings without training it again: the
 * same data, seed and general-model options train the same network, so a second run (the demo's
 * over-pruned candidate) can start from it. `key` says what trained it.
 */
export interface TrainedGeneral extends TrainedNetwork {
  key: string;
  run: { epochs: number; bestValidationLoss: number };
}

export interface Odf2nnaResult {
  report: PruneReport;
  scaling: Scaling;
  general: TrainedGeneral;
  pruned: TrainedNetwork;
}

/** What determines the general model: the data and the options its training reads. */
export function generalModelKey(dataset: Dataset, options: PruneOptions): string {
  const { layers, units, epochs, learningRate, patience, batchSize, seed, l1, l1Input, validationFraction, testFraction } = options;
  return JSON.stringify([dataset.fingerprint, dataset.task, layers, units, epochs, learningRate, patience, batchSize ?? null, seed, l1, l1Input, validationFraction, testFraction]);
}

/** A TrainingThread, or none (everything trains on this thread) when one cannot be started here. */
function startTrainingThread(data: TrainingData, backend: string): TrainingThread | undefined {
  try {
    return new TrainingThread(data, backend);
  } catch {
    return undefined;
  }
}

/**
 * ODF2NNA (Balderas, Lastra, Benítez 2023): train a large uniform dense network, keep only the
 * units whose activation varies by more than ε × the layer's most variable unit, rebuild a small
 * network from their weights, and retrain it lightly. Several ε are swept and the smallest model
 * whose validation score stays within tolerance of the original is chosen. Every reported score
 * comes from the held-out test split.
 */
export async function runOdf2nna(
  dataset: Dataset,
  options: PruneOptions,
  backend: string,
  onProgress: (event: ProgressEvent) => void = () => {},
  /** A general model trained before with the same data and general-model options: not trained again. */
  trained?: TrainedGeneral,
): Promise<Odf2nnaResult> {
  const key = generalModelKey(dataset, options);
  if (trained && trained.key !== key) throw new Error('the trained general model was trained on other data or options');
  const started = performance.now();
  const phaseTiming: Record<string, number> = {};
  const timed = async <T>(phase: Phase, work: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    const result = await work();
    phaseTiming[phase] = (phaseTiming[phase] ?? 0) + (performance.now() - t0) / 1000;
    return result;
  };

  const outputs = dataset.task === 'classification' ? dataset.classes.length : 1;
  assertTrainableSize([dataset.featureNames.length, ...Array.from({ length: options.layers }, () => options.units), outputs]);
  const splits = splitDataset(dataset, options.seed, { validation: options.validationFraction, test: options.testFraction });
  assertLearnable(splits.train.x, splits.train.y, dataset.task, dataset.featureNames, dataset.labelName);
  const scaling = fitScaling(splits.train.x, splits.train.y, dataset.task);
  const data = prepareTrainingData(dataset.task, outputs, scaling, splits);
  const batchSize = options.batchSize ?? Math.min(128, Math.max(16, Math.round(splits.train.x.length / 50)));
  const seeds = runSeeds(options.seed);
  const generalConfig: TrainConfig = {
    maxEpochs: options.epochs,
    learningRate: options.learningRate,
    patience: options.patience,
    batchSize,
    seed: seeds.generalShuffle,
  };
  const retrainConfig: TrainConfig = {
    maxEpochs: retrainEpochsOf(options),
    learningRate: retrainLearningRateOf(options),
    patience: options.retrainPatience,
    batchSize,
    seed: seeds.retrainShuffle,
  };
  const evaluate = (network: DenseNetwork, split: 'validation' | 'test'): Score =>
    scoreNetwork(network, data, split);
  // The general model and the scratch baseline share the L1 penalties; the light retraining has none.
  const penalties: KernelL1 = { input: options.l1Input, hidden: options.l1 };
  const tolerance: Tolerance = {
    accuracyPoints: options.toleranceAccuracyPoints,
    mseFraction: options.toleranceMseFraction,
    lossFraction: options.toleranceLossFraction,
  };

  // A second thread for the trainings that can run two at a time; it starts while the general model trains.
  const hidden = Array.from({ length: options.layers }, () => options.units);
  const widths = [data.inputs, ...hidden, outputs];
  const generalParams = widths.slice(1).reduce((sum, units, i) => sum + (widths[i]! + 1) * units, 0);
  let secondThread: TrainingThread | undefined;
  try {
    if (trainingThreadCount(options.trainingThreads, splits.train.x.length, generalParams) > 1) secondThread = startTrainingThread(data, backend);
    // 1. The general model: large, uniform, trained with early stopping.
    const generalModel = trained?.model ?? createDenseModel(data.inputs, hidden, outputs, dataset.task, seeds.generalInit, penalties);
    // Training starts here, after the data is read and split: a progress line's time counts from now.
    if (!trained) onProgress({ phase: 'train', done: 0, total: options.epochs });
    const generalRun =
      trained?.run ??
      (await timed('train', () =>
        trainModel(generalModel, data, generalConfig, (epoch) =>
          onProgress({ phase: 'train', done: epoch, total: options.epochs, detail: `epoch ${epoch}` }),
        ),
      ));
    // The phase is done, but a bar at epochs/epochs read as that many epochs run: early stopping usually ends far sooner.
    const trainDetail = trained ? 'trained before' : generalRun.epochs < options.epochs ? `early stop at epoch ${generalRun.epochs}` : undefined;
    onProgress({ phase: 'train', done: options.epochs, total: options.epochs, ...(trainDetail ? { detail: trainDetail } : {}) });
    const general = trained?.network ?? toDenseNetwork(generalModel, scaling);
    try {
      assertPredictionsFitFloat32(general, data, dataset.labelName, 'general');
    } catch (error) {
      if (!trained) generalModel.dispose();
      throw error;
    }
    const originalValidation = evaluate(general, 'validation');
    const originalTest = evaluate(general, 'test');
    const originalParams = parameterCount(general);

    // 2. Useful units: the variability of every hidden unit over the training data.
    const stats = await timed('measure', () => measureHiddenUnits(general, data.train.x));
    onProgress({ phase: 'measure', done: 1, total: 1 });

    // 3. Rebuild and retrain, once per distinct architecture the ε sweep leads to.
    const candidates = new Map<string, { network: DenseNetwork; before: { validation: Score; test: Score } }>();
    const rebuildStarted = performance.now();
    const keepByEpsilon = options.epsilons.map((epsilon, index) => {
      const keep = selectUsefulUnits(stats, epsilon, options.epsilonMode);
      const key = JSON.stringify(keep);
      if (!candidates.has(key)) {
        const network = transferUnits(general, keep, stats.map((s) => s.mean));
        candidates.set(key, { network, before: { validation: evaluate(network, 'validation'), test: evaluate(network, 'test') } });
      }
      onProgress({ phase: 'rebuild', done: index + 1, total: options.epsilons.length, detail: `ε ${epsilon}` });
      return { epsilon, key };
    });
    phaseTiming.rebuild = (performance.now() - rebuildStarted) / 1000;
    // Retrain from the smallest architecture up. The first one within tolerance is the answer,
    // so larger ones are only retrained when the whole trade-off is asked for (fullSweep).
    // With a second thread the next architecture retrains beside this one: when this one is
    // within tolerance its result is dropped, as if it had never been retrained.
    const thread = (await secondThread?.usable()) ? secondThread : undefined;
    const retrained = new Map<string, TrainedNetwork & Kept>();
    const bySize = [...candidates].sort(([, a], [, b]) => parameterCount(a.network) - parameterCount(b.network));
    const lossBounds = (candidate: number) => ({ candidate, reference: generalRun.bestValidationLoss });
    const record = (key: string, model: tf.Sequential, run: { bestValidationLoss: number; startValidationLoss: number; improved: boolean }, network = toDenseNetwork(model, scaling)) => {
      const { network: transferred, before } = candidates.get(key)!;
      const validation = evaluate(network, 'validation');
      const within = withinTolerance(validation, originalValidation, tolerance, lossBounds(run.bestValidationLoss));
      const withinBefore = withinTolerance(before.validation, originalValidation, tolerance, lossBounds(run.startValidationLoss));
      const retrainedScores = { validation, validationLoss: run.bestValidationLoss, validationLossBefore: run.startValidationLoss, test: evaluate(network, 'test'), within, withinBefore };
      // Retraining keeps its epoch of lowest validation loss, which can score below the transferred
      // weights it started from. When that takes the model out of tolerance and the transferred
      // weights were within, those are kept: retraining is there to recover what pruning lost.
      if (!within && withinBefore) {
        model.dispose();
        retrained.set(key, { model: toTfjsModel(transferred), network: transferred, weights: 'transferred', kept: { validation: before.validation, validationLoss: run.startValidationLoss, test: before.test }, retrained: retrainedScores });
      } else {
        // No epoch lowered the validation loss (or none ran: retrainEpochs 0): the weights are the transferred ones.
        retrained.set(key, { model, network, weights: run.improved ? 'retrained' : 'transferred', kept: retrainedScores, retrained: retrainedScores });
      }
      onProgress({ phase: 'retrain', done: retrained.size, total: candidates.size, detail: layerSizes(network).join('-') });
      return within || withinBefore;
    };
    for (let index = 0; index < bySize.length; index += thread ? 2 : 1) {
      const [key, candidate] = bySize[index]!;
      const next = thread ? bySize[index + 1] : undefined;
      const model = toTfjsModel(candidate.network);
      const [run, nextRun] = await timed('retrain', () =>
        Promise.all([trainModel(model, data, retrainConfig), next ? thread!.train({ kind: 'network', network: next[1].network }, retrainConfig) : undefined]),
      );
      if (record(key, model, run) && !options.fullSweep) break;
      if (!next || !nextRun) continue;
      if (record(next[0], toTfjsModel(nextRun.network), nextRun, nextRun.network) && !options.fullSweep) break;
    }
    onProgress({ phase: 'retrain', done: candidates.size, total: candidates.size });

    const sweep: SweepEntry[] = keepByEpsilon.map(({ epsilon, key }) => {
      const { network, before } = candidates.get(key)!;
      const after = retrained.get(key);
      const params = parameterCount(network);
      return {
        epsilon,
        layers: layerSizes(network),
        params,
        flops: flopsPerSample(network),
        param_cut: 1 - params / originalParams,
        retrained: after !== undefined,
        validation_before_retrain: before.validation,
        validation: after?.retrained.validation ?? null,
        validation_loss: after?.retrained.validationLoss ?? null,
        validation_loss_before_retrain: after?.retrained.validationLossBefore ?? null,
        test_before_retrain: before.test,
        test: after?.retrained.test ?? null,
        within_tolerance: after?.retrained.within ?? null,
        within_tolerance_before_retrain: after?.retrained.withinBefore ?? null,
        weights: after?.weights ?? null,
      };
    });
    const { entry: chosen, selection, warning: selectionWarning } = chooseEpsilon(sweep);
    const chosenKey = keepByEpsilon.find((k) => k.epsilon === chosen.epsilon)!.key;
    const pruned = retrained.get(chosenKey)!;
    for (const [key, trained] of retrained) if (key !== chosenKey) trained.model.dispose();
    try {
      assertPredictionsFitFloat32(pruned.network, data, dataset.labelName, 'pruned');
    } catch (error) {
      pruned.model.dispose();
      if (!trained) generalModel.dispose();
      throw error;
    }

    // Baselines at the chosen architecture: trained from scratch, and L1-norm unit pruning.
    let scratch: PruneReport['scratch'] = null;
    let l1: PruneReport['l1'] = null;
    if (options.baselines) {
      const prunedHidden = chosen.layers.slice(0, -1);
      await timed('baselines', async () => {
        let done = 0;
        const finished = (detail: 'scratch' | 'l1') => onProgress({ phase: 'baselines', done: ++done, total: 2, detail });
        const scratchStart: TrainingStart = { kind: 'fresh', hidden: prunedHidden, seed: seeds.scratchInit, l1: penalties };
        const scratchConfig = { ...generalConfig, seed: seeds.scratchShuffle };
        const trainL1 = async () => {
          const l1Keep = selectByOutgoingL1(general.layers.slice(1), prunedHidden);
          const l1Run = await trainNetwork({ kind: 'network', network: transferUnits(general, l1Keep) }, data, retrainConfig);
          l1 = { test: evaluate(l1Run.network, 'test') };
          finished('l1');
        };
        // The scratch baseline on the second thread while the L1 one trains here; one after the other without it.
        const scratchRun = thread
          ? (await Promise.all([thread.train(scratchStart, scratchConfig), trainL1()]))[0]
          : await trainNetwork(scratchStart, data, scratchConfig);
        scratch = { test: evaluate(scratchRun.network, 'test'), epochs: scratchRun.epochs };
        finished('scratch');
        if (!thread) await trainL1();
      });
    }

    const report: PruneReport = {
      tool: toolOf(buildCommit()),
      task: dataset.task,
      backend,
      options: optionsInEffect(options, batchSize),
      seed: options.seed,
      epsilon: chosen.epsilon,
      epsilon_mode: options.epsilonMode,
      selection,
      warnings: [
        ...dataWarnings(dataset, options),
        ...unstandardizableWarnings(splits.train.x, dataset.featureNames),
        ...selectionWarnings(dataset.task, splits.validation.x.length, options, sweep.every((entry) => entry.retrained)),
        ...(selectionWarning ? [selectionWarning] : []),
      ],
      tolerance: {
        accuracy_points: options.toleranceAccuracyPoints,
        mse_fraction: options.toleranceMseFraction,
        loss_fraction: options.toleranceLossFraction,
      },
      l1_penalty: { ...penalties },
      data: {
        fingerprint: dataset.fingerprint,
        rows: dataset.x.length,
        features: dataset.featureNames.length,
        classes: dataset.classes,
        split: { train: splits.train.x.length, validation: splits.validation.x.length, test: splits.test.x.length },
      },
      timing_s: (performance.now() - started) / 1000,
      phase_timing_s: phaseTiming,
      training_threads: thread ? 2 : 1,
      sweep,
      layers: { original: layerSizes(general), pruned: chosen.layers },
      original: {
        params: originalParams,
        flops: flopsPerSample(general),
        epochs: generalRun.epochs,
        validation: originalValidation,
        validation_loss: generalRun.bestValidationLoss,
        test: originalTest,
      },
      pruned: {
        params: chosen.params,
        flops: chosen.flops,
        param_cut: chosen.param_cut,
        validation: pruned.kept.validation,
        test: pruned.kept.test,
        test_before_retrain: chosen.test_before_retrain,
        weights: pruned.weights,
      },
      scratch,
      l1,
    };
    return { report, scaling, general: { network: general, model: generalModel, key, run: generalRun }, pruned };
  } finally {
    await secondThread?.close();
    disposeTrainingData(data);
  }
}

/** The validation score and loss of the weights an ε's model keeps (see SweepEntry.weights). */
function keptValidation(entry: SweepEntry): { score: Score; loss: number } {
  return entry.weights === 'transferred' && entry.within_tolerance === false
    ? { score: entry.validation_before_retrain, loss: entry.validation_loss_before_retrain! }
    : { score: entry.validation!, loss: entry.validation_loss! };
}

const isWithin = (entry: SweepEntry) => entry.within_tolerance === true || entry.within_tolerance_before_retrain === true;

/**
 * The smallest model whose validation score is within tolerance of the original's, retrained or
 * (when retraining took it out) as transferred (ties: the better validation score, then the smaller
 * ε). With a single ε, that ε. When no ε is within tolerance, the best validation score (ties: the
 * lower validation loss, then the smaller model); a warning says so, as it does for a single ε
 * outside tolerance.
 */
export function chooseEpsilon(sweep: readonly SweepEntry[]): { entry: SweepEntry; selection: string; warning?: string } {
  const done = sweep.filter((entry) => entry.validation !== null);
  // A smaller ε keeps more units: the first thing to try, before a larger general model.
  const outside = (entry: SweepEntry, why: string, smaller: string) => `${why}; the model may score below the original: ${smaller}, or prune with a larger network or more --epochs`;
  if (sweep.length === 1 && done.length === 1) {
    const entry = done[0]!;
    return isWithin(entry)
      ? { entry, selection: 'single ε given' }
      : { entry, selection: 'single ε given', warning: outside(entry, `ε ${entry.epsilon} is outside tolerance of the original on validation`, 'try a smaller --epsilon (it keeps more units), or leave it out to sweep') };
  }
  const byValidation = (a: SweepEntry, b: SweepEntry) => scoreValue(keptValidation(b).score) - scoreValue(keptValidation(a).score);
  const within = done.filter(isWithin);
  if (within.length > 0) {
    const entry = [...within].sort((a, b) => a.params - b.params || byValidation(a, b) || a.epsilon - b.epsilon)[0]!;
    const selection = 'smallest model within tolerance of the original on validation';
    return entry.weights === 'transferred' && entry.within_tolerance === false
      ? { entry, selection: `${selection}; retraining took it out of tolerance, so it keeps the transferred weights (before retraining)` }
      : { entry, selection };
  }
  const byLoss = (a: SweepEntry, b: SweepEntry) => keptValidation(a).loss - keptValidation(b).loss;
  const entry = [...done].sort((a, b) => byValidation(a, b) || byLoss(a, b) || a.params - b.params || a.epsilon - b.epsilon)[0]!;
  return {
    entry,
    selection: 'no ε stayed within tolerance; chose the best validation score',
    warning: outside(entry, `no ε stayed within tolerance of the original on validation (its score, or for a classifier its cross-entropy), so ε ${entry.epsilon} was chosen for its validation score`, 'compare the sweep, and sweep smaller ε (--epsilon: a smaller ε keeps more units)'),
  };
}

/**
 * The data set's own warnings from loading (features rounded to float32), then the classes no
 * validation or test score measures, named (at most five) so the user can fix the data.
 */
export function dataWarnings(
  dataset: Pick<Dataset, 'task' | 'y' | 'classes' | 'warnings'>,
  options: Pick<PruneOptions, 'validationFraction' | 'testFraction'>,
): string[] {
  const loaded = dataset.warnings ?? [];
  if (dataset.task !== 'classification') return [...loaded];
  const thin = thinClasses(dataset.y, { validation: options.validationFraction, test: options.testFraction });
  if (thin.length === 0) return [...loaded];
  const names = thin.slice(0, 5).map((index) => JSON.stringify(dataset.classes[index]));
  const more = thin.length > 5 ? ` and ${thin.length - 5} more` : '';
  return [
    ...loaded,
    `${thin.length === 1 ? 'class' : 'classes'} ${names.join(', ')}${more} ${thin.length === 1 ? 'has' : 'have'} too few rows to be in both the ` +
      'validation and the test split: no score measures them',
  ];
}

/**
 * What a user should know about how much to trust the choice of ε. On a small validation split
 * one row is worth more accuracy than the tolerance, so "within tolerance" means "no validation
 * row lost" and the choice rests on the cross-entropy bound. The hint to retrain every ε only
 * when some ε was not (`everyEpsilonRetrained`: the search stopped before it).
 */
export function selectionWarnings(task: Dataset['task'], validationRows: number, options: PruneOptions, everyEpsilonRetrained = options.fullSweep): string[] {
  if (task !== 'classification' || options.epsilons.length < 2) return [];
  const pointsPerRow = 100 / validationRows;
  if (pointsPerRow <= options.toleranceAccuracyPoints) return [];
  return [
    `the validation split has ${validationRows} rows: one row is ${pointsPerRow.toFixed(1)} accuracy points, more than the ` +
      `${options.toleranceAccuracyPoints}-point tolerance, so the choice of ε is noisy; compare the sweep${everyEpsilonRetrained ? '' : ' (--full-sweep retrains every ε)'}`,
  ];
}

/**
 * model.onnx de-standardizes a regression prediction in float32 (× the target's scale, + its
 * mean). A label whose values come near the float32 limit (±3e38) gives predictions beyond it,
 * which devices get as ±Infinity while the scores, computed in float64, look sound. Throws a
 * UserError naming the label when any prediction of `network` on the data overflows so.
 */
function assertPredictionsFitFloat32(network: DenseNetwork, data: TrainingData, labelName: string, which: 'general' | 'pruned'): void {
  const target = data.scaling.target;
  if (!target) return;
  const scale = Math.fround(target.scale);
  const mean = Math.fround(target.mean);
  const model = toTfjsModel(network);
  let overflowing = 0;
  let rows = 0;
  let largest = 0;
  try {
    for (const split of [data.train, data.validation, data.test]) {
      const raw = tf.tidy(() => (model.predict(split.x, { batchSize: 1024 }) as tf.Tensor2D).dataSync());
      rows += raw.length;
      for (const value of raw) if (!Number.isFinite(Math.fround(Math.fround(value * scale) + mean))) overflowing++;
      for (const label of split.labels) largest = Math.max(largest, Math.abs(label));
    }
  } finally {
    model.dispose();
  }
  if (overflowing === 0) return;
  throw new UserError(
    `the label ${JSON.stringify(labelName)} reaches ±${largest.toPrecision(2)}, so near the float32 limit (±3.4e38) that the ${which} model's ` +
      `predictions overflow it on ${overflowing} of ${rows} rows (model.onnx would answer ±Infinity): divide the label by a power of ten before pruning`,
  );
}

function scoreNetwork(network: DenseNetwork, data: TrainingData, split: 'validation' | 'test'): Score {
  const model = toTfjsModel(network);
  try {
    return scorePredictions(data.task, predictRows(model, data[split].x, data.scaling), data[split].labels);
  } finally {
    model.dispose();
  }
}
