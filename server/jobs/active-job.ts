import type { Worker } from 'node:worker_threads';
import type { ProgressEvent } from '../pruning/odf2nna.ts';
import type { JobState } from '../store/repositories/jobs-repository.ts';

/** A cancel that took effect: the job ends `cancelled`, audited with that end in one transaction. */
export interface JobCancel {
  actor: string;
  message: string;
  /** The job's state when it was cancelled. */
  state: JobState;
}

/** A job this server took off its queue, from then until its run has stored how it ended. */
export interface ActiveJob {
  worker: Worker | undefined;
  /** The first cancel that took effect. */
  cancel: JobCancel | undefined;
  /** Its end is decided (its models are being registered, or its failure recorded): too late to cancel. */
  ending: boolean;
  /** The latest progress (stored ones are throttled) and the chain of progress writes, kept in order. */
  progress: ProgressEvent | undefined;
  progressWrites: Promise<unknown>;
  /** Settles when its worker (if it got one) has exited. */
  exited: Promise<void>;
  /** Settles once the run is over (it never rejects). */
  ended: Promise<void>;
}

export function newActiveJob(): ActiveJob {
  return { worker: undefined, cancel: undefined, ending: false, progress: undefined, progressWrites: Promise.resolve(), exited: Promise.resolve(), ended: Promise.resolve() };
}
