import { z } from 'zod';
import { UserError } from '../../shared/util/errors.ts';
import { wholeNumber } from '../../shared/util/whole-number.ts';
import { MAX_SEED } from '../../shared/artifact/lineage-check.ts';

/** The largest seed, as a lineage's seed is checked (shared/artifact/lineage-check.ts). */
export { MAX_SEED };

export const DEFAULT_EPSILONS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7] as const;
export const DEFAULT_RETRAIN_EPOCHS = 60;

/** The retraining's epoch budget: as given, or 60 capped at the general model's `epochs`. */
export function retrainEpochsOf(options: { retrainEpochs?: number; epochs: number }): number {
  return options.retrainEpochs ?? Math.min(DEFAULT_RETRAIN_EPOCHS, options.epochs);
}

/** The light retraining's learning rate: as given, or half the general model's. */
export function retrainLearningRateOf(options: { retrainLearningRate?: number | undefined; learningRate: number }): number {
  return options.retrainLearningRate ?? options.learningRate / 2;
}

/** The most hidden layers, and units per layer, a general model has. */
export const MAX_LAYERS = 16;
export const MAX_UNITS = 4096;

/**
 * The most weights between the general model's hidden layers ((layers − 1) × units²): 3 layers
 * of 4096 units. Training that network on the wasm backend peaks at about 3.2 GB, under wasm32's
 * 4 GB; 16 layers of 4096 (which the per-flag limits allow) ran out of it after minutes and ended
 * as an internal error ("memory access out of bounds").
 */
export const MAX_HIDDEN_WEIGHTS = 2 * MAX_UNITS * MAX_UNITS;

/**
 * The most weights in the whole general model (features → hidden layers → outputs), which only the
 * data can tell: the first layer grows with the features. Measured on the wasm backend (40 rows, 3
 * layers of 4096 units): 4,500 features (52.0 M weights) trained, peaking at 6.4 GB resident; 8,192
 * features (67.1 M) ran out of wasm32's 4 GB heap after 15 s, as an internal error.
 */
export const MAX_WEIGHTS = 52_000_000;

/** Refuses, before any training, a general model of `widths` (features, hidden units..., outputs) too large to train. */
export function assertTrainableSize(widths: readonly number[]): void {
  const weights = widths.slice(1).reduce((sum, units, i) => sum + widths[i]! * units, 0);
  if (weights <= MAX_WEIGHTS) return;
  const [features, ...rest] = widths;
  throw new UserError(
    `the general model (${features!.toLocaleString('en-US')} features into ${rest.length - 1} hidden layer${rest.length === 2 ? '' : 's'} of ${rest[0]!.toLocaleString('en-US')} units) ` +
      `needs ${weights.toLocaleString('en-US')} weights, more than training can hold (at most ${MAX_WEIGHTS.toLocaleString('en-US')}): use fewer units or layers, or fewer features`,
  );
}

/** The most ε values one run sweeps. */
export const MAX_EPSILONS = 50;

/** Everything that steers an ODF2NNA run. Validated once, at the edge (CLI flags, API bodies). */
export const PruneOptionsSchema = z
  .strictObject({
    task: z.enum(['classification', 'regression']).optional(),
    /** One ε prunes at that ε; several sweep them and pick the smallest model within tolerance. */
    epsilons: z
      .array(z.number().positive('must be above 0 (and below 1 in the default relative mode)').finite())
      .min(1)
      // Each ε of a sweep is a pruned (and, with fullSweep, retrained) model, kept in the report.
      .max(MAX_EPSILONS, `at most ${MAX_EPSILONS} values to sweep`)
      .refine((list) => new Set(list).size === list.length, {
        error: (issue) => {
          const list = issue.input as number[];
          return `ε ${list.find((e, i) => list.indexOf(e) !== i)} is given twice`;
        },
      })
      // Swept, reported and printed smallest first, however they were given.
      .transform((list) => [...list].sort((a, b) => a - b))
      .default([...DEFAULT_EPSILONS]),
    epsilonMode: z.enum(['relative', 'absolute']).default('relative'),
    layers: wholeNumber(1, MAX_LAYERS).default(3),
    units: wholeNumber(2, MAX_UNITS).default(128),
    epochs: wholeNumber(1, 10_000).default(200),
    patience: wholeNumber(1, 1000).default(15),
    learningRate: z.number().positive().max(1).default(1e-3),
    /**
     * L1 penalties on the kernels while training the general model (and the scratch baseline):
     * `l1Input` on the first hidden layer, `l1` on the others; 0 turns one off.
     */
    l1Input: z.number().min(0).max(1).default(1e-3),
    l1: z.number().min(0).max(1).default(3e-4),
    /**
     * 0 skips the retraining: the transferred model is kept as is. By default 60, and never more
     * than `epochs` (the retraining is light next to the general model's training).
     */
    retrainEpochs: wholeNumber(0, 10_000).optional(),
    retrainPatience: wholeNumber(1, 1000).default(10),
    /** By default half of `learningRate`. */
    retrainLearningRate: z.number().positive().max(1).optional(),
    /** Rows per gradient step; by default about 1/50 of the training split, between 16 and 128. */
    batchSize: wholeNumber(1, 65_536).optional(),
    seed: wholeNumber(0, MAX_SEED).default(42),
    /** Accuracy may drop this many points (classification) ... */
    toleranceAccuracyPoints: z.number().min(0).max(100).default(0.5),
    /** ... or MSE grow by this fraction (regression), against the original's validation score. */
    toleranceMseFraction: z.number().min(0).max(10).default(0.02),
    /** ... and, for classification, cross-entropy grow by at most this fraction (or 0.05 nats). */
    toleranceLossFraction: z.number().min(0).max(100).default(0.5),
    validationFraction: z.number().gt(0).lt(0.5).default(0.15),
    testFraction: z.number().gt(0).lt(0.5).default(0.2),
    baselines: z.boolean().default(true),
    /** Retrain every ε of the sweep, not only up to the smallest model within tolerance. */
    fullSweep: z.boolean().default(false),
    /**
     * Threads that train: 2 runs ODF2NNA's independent trainings (the next ε's retraining, the
     * scratch baseline beside the L1 one) two at a time; `auto` uses 2 for large data on a machine
     * with a second core (trainingThreadCount). The results are the same either way.
     */
    trainingThreads: z.union([z.literal('auto'), z.literal(1), z.literal(2)], { error: 'must be "auto", 1 or 2' }).default('auto'),
  })
  .superRefine((options, ctx) => {
    const hiddenWeights = (options.layers - 1) * options.units ** 2;
    // Of layers and units that each are within their own bounds: else that is their issue, and 1e20 units made this one absurd.
    const sized = [options.layers, options.units].every(Number.isInteger) && options.layers >= 1 && options.layers <= MAX_LAYERS && options.units >= 2 && options.units <= MAX_UNITS;
    if (sized && hiddenWeights > MAX_HIDDEN_WEIGHTS) {
      ctx.addIssue({
        code: 'custom',
        path: ['units'],
        message:
          `${options.layers} hidden layers of ${options.units} units need ${hiddenWeights.toLocaleString('en-US')} weights between them, ` +
          `more than training can hold (at most ${MAX_HIDDEN_WEIGHTS.toLocaleString('en-US')}, 3 layers of 4096 units): use fewer layers or units`,
      });
    }
    if (options.epsilonMode === 'relative') {
      options.epsilons.forEach((epsilon, i) => {
        // Not above 0 (or not a number) is the list's own refusal already: one message per ε.
        if (epsilon >= 1) {
          ctx.addIssue({ code: 'custom', path: ['epsilons', i], message: `ε ${epsilon} is outside (0, 1) in relative mode` });
        }
      });
    }
  });

export type PruneOptionsInput = z.input<typeof PruneOptionsSchema>;
export type PruneOptions = z.output<typeof PruneOptionsSchema>;

/** The options only one task heeds: given for a data set of the other task, they would be ignored without a word. */
const TASK_OF_OPTION: Partial<Record<keyof PruneOptions, PruneOptions['task']>> = {
  toleranceAccuracyPoints: 'classification',
  toleranceLossFraction: 'classification',
  toleranceMseFraction: 'regression',
};

/**
 * Of the options a request gave (by name), the first that the data set's task would ignore, and
 * why, in words a caller can act on; undefined if every given option applies.
 */
export function optionForOtherTask(given: readonly string[], task: PruneOptions['task']): { key: string; reason: string } | undefined {
  const key = given.find((name) => {
    const owner = TASK_OF_OPTION[name as keyof PruneOptions];
    return owner !== undefined && owner !== task;
  });
  if (key === undefined) return undefined;
  const instead = task === 'regression' ? 'its tolerance is toleranceMseFraction, a fraction of the MSE' : 'its tolerances are toleranceAccuracyPoints and toleranceLossFraction';
  return { key, reason: `applies to ${TASK_OF_OPTION[key as keyof PruneOptions]} only, and this data set is a ${task} one: ${instead}` };
}

/**
 * The options that shaped a run's models, with the defaults that depend on others resolved (the
 * retraining's epochs and learning rate, the batch size the training split gave): what report.json
 * and each artifact's training.json record. Left out: the task (the manifest says it) and
 * trainingThreads, which changes no result.
 */
export function optionsInEffect(options: PruneOptions, batchSize: number): Record<string, number | string | boolean | number[]> {
  return {
    epsilons: [...options.epsilons],
    epsilonMode: options.epsilonMode,
    layers: options.layers,
    units: options.units,
    epochs: options.epochs,
    patience: options.patience,
    learningRate: options.learningRate,
    l1Input: options.l1Input,
    l1: options.l1,
    retrainEpochs: retrainEpochsOf(options),
    retrainPatience: options.retrainPatience,
    retrainLearningRate: retrainLearningRateOf(options),
    batchSize,
    seed: options.seed,
    toleranceAccuracyPoints: options.toleranceAccuracyPoints,
    toleranceMseFraction: options.toleranceMseFraction,
    toleranceLossFraction: options.toleranceLossFraction,
    validationFraction: options.validationFraction,
    testFraction: options.testFraction,
    baselines: options.baselines,
    fullSweep: options.fullSweep,
  };
}
