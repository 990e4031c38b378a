import type { Task } from '../../shared/data/dataset.ts';
import type { Scaling } from '../../shared/model/tfjs-convert.ts';
import type { TrainConfig, TrainingOutcome, TrainingStart } from './training.ts';

/** One split as the rows-by-columns values of its standardized tensors. */
export interface SplitValues {
  rows: number;
  x: Float32Array;
  y: Float32Array;
}

/** workerData of a training thread: what every training it runs reads, sent once. */
export interface TrainingThreadInput {
  /** The tfjs backend the calling thread trains on; the thread must get the same one, or results would differ. */
  backend: string;
  task: Task;
  inputs: number;
  outputs: number;
  scaling: Scaling;
  ignoredInputs: number[];
  train: SplitValues;
  validation: SplitValues;
}

export interface TrainingRequest {
  id: number;
  start: TrainingStart;
  config: TrainConfig;
}

/** Messages a training thread posts. */
export type TrainingThreadMessage =
  | { type: 'ready'; backend: string }
  | { type: 'trained'; id: number; outcome: TrainingOutcome }
  | { type: 'failed'; id: number; message: string; stack?: string }
  | { type: 'start-failed'; message: string; stack?: string };
