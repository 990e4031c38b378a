import type { ResourceLimits } from 'node:worker_threads';
import { ServiceError } from '../app/service-error.ts';
import { WorkerPool, type WorkerPoolWords } from '../app/worker-pool.ts';
import type { JobDataCheck, JobDataCheckInput } from './job-data-check.ts';

const WORKER_ENTRY = new URL('./job-data-check-worker-entry.mjs', import.meta.url);
/** Checks of submitted data sets running at once (each a worker thread); more wait their turn. */
export const DATA_CHECK_THREADS = 2;
/**
 * Checks that may wait for a free worker when not given (the server gives its --max-queued-jobs):
 * each holds its submitted data set, up to the body limit, in memory; one more is refused at once.
 */
export const DATA_CHECK_MAX_WAITING = 16;
/** An idle check worker is ended after this long: it gives back the memory of the last data set. */
export const DATA_CHECK_IDLE_MS = 15_000;
/** A check taking longer than this (16 MiB parse in a few seconds) is stopped with its worker: a 413 naming the limit, never a request left hanging. */
export const DATA_CHECK_TIMEOUT_MS = 120_000;

export interface JobDataCheckPoolOptions {
  threads?: number;
  idleMs?: number;
  timeoutMs?: number;
  maxWaiting?: number;
  /** Per-worker limits (tests make a worker run out of memory with them). */
  resourceLimits?: ResourceLimits;
}

/**
 * Checks submitted data sets (checkJobData) in worker threads, so that parsing a CSV of up to the
 * body limit never blocks the server's event loop (a WorkerPool: at most `threads` workers, each
 * checking one data set at a time, the text copied to it and only the summary coming back, ended
 * once idle for `idleMs`). A worker that fails or dies fails only its own check (a 500); after
 * stop() every check, waiting or running, is refused as the server shutting down (a 503).
 */
export class JobDataCheckPool {
  readonly #pool: WorkerPool<JobDataCheckInput, JobDataCheck>;

  constructor(options: JobDataCheckPoolOptions = {}) {
    this.#pool = new WorkerPool<JobDataCheckInput, JobDataCheck>(WORKER_ENTRY, DATA_CHECK_WORDS, {
      threads: options.threads ?? DATA_CHECK_THREADS,
      idleMs: options.idleMs ?? DATA_CHECK_IDLE_MS,
      timeoutMs: options.timeoutMs ?? DATA_CHECK_TIMEOUT_MS,
      maxWaiting: options.maxWaiting ?? DATA_CHECK_MAX_WAITING,
      ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
    });
  }

  /** Worker threads alive now (at most `threads`). */
  get threads(): number {
    return this.#pool.threads;
  }

  /** The data set's task and options; a UserError (400) for bad data, an Error (500) if the check itself failed. */
  check(input: JobDataCheckInput): Promise<JobDataCheck> {
    return this.#pool.run(input);
  }

  /** Refuses the waiting checks, ends every worker (refusing its check) and waits for them to exit. */
  stop(): Promise<void> {
    return this.#pool.stop();
  }
}

const DATA_CHECK_WORDS: WorkerPoolWords = {
  shuttingDown,
  busy: (waiting) =>
    new ServiceError(
      'too_many_requests',
      `${waiting} submitted data set${waiting === 1 ? ' is' : 's are'} already waiting for ${waiting === 1 ? 'its' : 'their'} check (--max-queued-jobs); submit the job again in a few seconds`,
    ),
  invalid: (message) => new ServiceError('bad_request', message),
  // Said as what it is, not as a fault of the server's: a data set this large (millions of rows)
  // is more than the server checks in time, whatever its --max-body-bytes lets through.
  timedOut: (limit) => new ServiceError('payload_too_large', `checking the data set took over ${limit}; stopped: it is more than this server checks in time (use a sample of its rows)`),
  fault: checkFault,
  failed: (message) => `checking the data set failed: ${message}`,
  workerFailed: (message) => `the data check worker failed: ${message}`,
  workerExited: (code) => `the data check worker exited (code ${code}) while checking the data set`,
  cannotSend: (message) => `cannot send the data set to its check: ${message}`,
};

function shuttingDown(): ServiceError {
  return new ServiceError('retry_later', 'the server is shutting down; submit the job again once it is back');
}

/** A fault of the check, not of the data: answered 500, logged with the worker's stack when there is one. */
function checkFault(message: string, stack?: string): Error {
  const fault = new Error(message);
  if (stack) fault.stack = `${message}\n${stack.split('\n').slice(1).join('\n')}`;
  return fault;
}
