import type { Manifest } from '../../shared/artifact/manifest.ts';
import type { ProgressEvent } from '../pruning/odf2nna.ts';
import type { PruneOptions } from '../pruning/options.ts';
import type { Score } from '../../shared/model/scoring.ts';

/** workerData of a pruning worker. */
export interface PruneWorkerInput {
  csvText: string;
  source: string;
  label: string;
  task?: 'classification' | 'regression';
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
  /** The ε sweep's size/score trade-off, for the dashboard's chart. */
  sweep: { epsilon: number; params: number; paramCut: number; test: Score | null }[];
}

/** Messages the worker posts to the server thread. */
export type PruneWorkerMessage =
  | { type: 'progress'; event: ProgressEvent }
  | { type: 'done'; general: Manifest; pruned: Manifest; summary: PruneSummary }
  | { type: 'error'; message: string; userError: boolean; stack?: string };
