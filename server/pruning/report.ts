import type { Task } from '../../shared/data/dataset.ts';
import type { EpsilonMode } from './useful-units.ts';
import type { Score } from '../../shared/model/scoring.ts';

/**
 * One ε of the sweep: the architecture it leads to and its scores before and after retraining.
 * Retraining goes from the smallest architecture up and stops at the first within tolerance,
 * so larger ones may not be retrained (`retrained: false`, after-retraining scores null)
 * unless a full sweep was asked for.
 */
export interface SweepEntry {
  epsilon: number;
  layers: number[];
  params: number;
  flops: number;
  /** Share of the original's parameters removed, in [0, 1]. */
  param_cut: number;
  retrained: boolean;
  validation_before_retrain: Score;
  validation: Score | null;
  /** The training loss (cross-entropy, or MSE on the standardized target) on the validation split. */
  validation_loss: number | null;
  /** The same, of the transferred weights retraining started from (null: not retrained). */
  validation_loss_before_retrain: number | null;
  test_before_retrain: Score;
  /** After retraining (null: not retrained), whichever weights `weights` says the model keeps; a job's summary gives the kept ones' score instead. */
  test: Score | null;
  /** Whether the retrained weights are within tolerance of the original on validation (null: not retrained). */
  within_tolerance: boolean | null;
  /** Whether the transferred weights (before retraining) are (null: not retrained). */
  within_tolerance_before_retrain: boolean | null;
  /**
   * The weights this ε's model keeps: retrained, or the transferred ones when retraining took a
   * model that was within tolerance out of it, or left them as they were (no epoch lowered the
   * validation loss, or none ran); null: not retrained.
   */
  weights: 'retrained' | 'transferred' | null;
}

/** DIR/report.json: what the prune command did and every number it measured, all on the test split. */
export interface PruneReport {
  /** What ran: fleetprune's version and, run from a git checkout, its commit (each artifact's training.json says the same). */
  tool: { name: string; version: string; commit?: string };
  task: Task;
  backend: string;
  /** The options in effect, defaults resolved (optionsInEffect); each artifact's training.json holds them too. */
  options: Record<string, number | string | boolean | number[]>;
  seed: number;
  epsilon: number;
  epsilon_mode: EpsilonMode;
  selection: string;
  /** Caveats about the choice of ε, e.g. a validation split too small to resolve the tolerance. */
  warnings: string[];
  tolerance: { accuracy_points: number; mse_fraction: number; loss_fraction: number };
  /** The L1 penalties the general model and the scratch baseline were trained with. */
  l1_penalty: { input: number; hidden: number };
  data: { fingerprint: string; rows: number; features: number; classes: string[]; split: { train: number; validation: number; test: number } };
  timing_s: number;
  phase_timing_s: Record<string, number>;
  /** Threads that trained (options.trainingThreads as it worked out): 2 ran independent trainings two at a time. */
  training_threads: number;
  sweep: SweepEntry[];
  layers: { original: number[]; pruned: number[] };
  original: { params: number; flops: number; epochs: number; validation: Score; validation_loss: number; test: Score };
  pruned: {
    params: number;
    flops: number;
    param_cut: number;
    validation: Score;
    test: Score;
    test_before_retrain: Score;
    /** The weights the pruned model ships: retrained, or transferred (see SweepEntry.weights). */
    weights: 'retrained' | 'transferred';
  };
  scratch: { test: Score; epochs: number } | null;
  l1: { test: Score } | null;
}
