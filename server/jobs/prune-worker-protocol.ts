import type { Manifest } from '../../shared/artifact/manifest.ts';
import type { ProgressEvent } from '../pruning/odf2nna.ts';
import type { PruneOptions } from '../pruning/options.ts';
import type { PruneReport, SweepEntry } from '../pruning/report.ts';
import { testToleranceNote } from '../pruning/summary.ts';
import type { Score } from '../../shared/model/scoring.ts';

/** workerData of a pruning worker. */
export interface PruneWorkerInput {
  csvText: string;
  source: string;
  label: string;
  task?: 'classification' | 'regression';
  /** Whether the request gave the task (else `task` is the one inferred from the label, and the data's warnings say so where it is doubtful). */
  taskGiven: boolean;
  options: PruneOptions;
  outDir: string;
  /** About the disk its outputs need (jobOutputBytes), checked before the worker starts. */
  outputBytes: number;
  name: string;
  privateKeyPem: string;
}

export interface PruneSummary {
  epsilon: number | null;
  paramCut: number | null;
  originalLayers: number[];
  prunedLayers: number[];
  backend: string;
  seconds: number;
  /**
   * The ε sweep's size/score trade-off, for the dashboard's chart: each ε's test score of the
   * weights it keeps (its transferred ones when retraining took it out of tolerance: report.json's
   * SweepEntry.weights), null when it was not retrained.
   */
  sweep: { epsilon: number; params: number; paramCut: number; test: Score | null; weights: 'retrained' | 'transferred' | null }[];
  /** report.json's warnings (caveats about the data and the choice of ε), and prune's note on a test score outside the tolerance (summaryWarnings). */
  warnings: string[];
}

/** Messages the worker posts to the server thread. */
export type PruneWorkerMessage =
  | { type: 'progress'; event: ProgressEvent }
  | { type: 'done'; general: Manifest; pruned: Manifest; summary: PruneSummary }
  /** `code`: the system error's (ENOSPC, EROFS), so a full or read-only --data-dir is said as such. */
  | { type: 'error'; message: string; userError: boolean; stack?: string; code?: string };

/** The sweep as a job's summary keeps it: each ε's test score of the weights its model keeps. */
export function sweepSummary(sweep: readonly SweepEntry[]): PruneSummary['sweep'] {
  return sweep.map((entry) => ({
    epsilon: entry.epsilon,
    params: entry.params,
    paramCut: entry.param_cut,
    // Transferred weights are the ones before retraining (kept over the retrained ones, or left as they were).
    test: entry.weights === 'transferred' ? { ...entry.test_before_retrain } : entry.test ? { ...entry.test } : null,
    weights: entry.weights,
  }));
}

/** A job summary's warnings: report.json's, and what prune prints as its note (a job's caller sees neither report.json nor prune's output). */
export function summaryWarnings(report: PruneReport): string[] {
  const note = testToleranceNote(report);
  return [...report.warnings, ...(note === undefined ? [] : [note])];
}
