import { Worker, type ResourceLimits } from 'node:worker_threads';
import { errorMessage } from '../../shared/util/errors.ts';
import { ServiceError } from '../app/service-error.ts';
import type { JobDataCheck, JobDataCheckInput } from './job-data-check.ts';
import type { JobDataCheckReply } from './job-data-check-protocol.ts';

const WORKER_ENTRY = new URL('./job-data-check-worker-entry.mjs', import.meta.url);
/** Checks of submitted data sets running at once (each a worker thread); more wait their turn. */
export const DATA_CHECK_THREADS = 2;
/** An idle check worker is ended after this long: it gives back the memory of the last data set. */
export const DATA_CHECK_IDLE_MS = 15_000;
/** A check taking longer than this (16 MiB parse in a few seconds) is stopped with its worker: a 500, never a request left hanging. */
export const DATA_CHECK_TIMEOUT_MS = 120_000;

export interface JobDataCheckPoolOptions {
  threads?: number;
  idleMs?: number;
  timeoutMs?: number;
  /** Per-worker limits (tests make a worker run out of memory with them). */
  resourceLimits?: ResourceLimits;
}

interface Pending {
  id: number;
  input: JobDataCheckInput;
  resolve: (check: JobDataCheck) => void;
  reject: (error: Error) => void;
}

interface CheckWorker {
  worker: Worker;
  current: Pending | undefined;
  /** Ends the current check if it runs too long. */
  checkTimer: NodeJS.Timeout | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  /** Ended for idling: takes no check (one dispatched to it would die with it), counts until it exits. */
  retiring: boolean;
}

/**
 * Checks submitted data sets (checkJobData) in worker threads, so that parsing a CSV of up to the
 * body limit never blocks the server's event loop. At most `threads` workers, started when needed,
 * each checking one data set at a time (the text is copied to it, only the summary comes back) and
 * ended once idle for `idleMs`. A worker that fails or dies fails only its own check (a 500);
 * after stop() every check, waiting or running, is refused as the server shutting down (a 503).
 */
export class JobDataCheckPool {
  readonly #threads: number;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  readonly #resourceLimits: ResourceLimits | undefined;
  readonly #workers = new Set<CheckWorker>();
  readonly #waiting: Pending[] = [];
  #nextId = 1;
  #stopped = false;

  constructor(options: JobDataCheckPoolOptions = {}) {
    this.#threads = Math.max(1, options.threads ?? DATA_CHECK_THREADS);
    this.#idleMs = options.idleMs ?? DATA_CHECK_IDLE_MS;
    this.#timeoutMs = options.timeoutMs ?? DATA_CHECK_TIMEOUT_MS;
    this.#resourceLimits = options.resourceLimits;
  }

  /** Worker threads alive now (at most `threads`). */
  get threads(): number {
    return this.#workers.size;
  }

  /** The data set's task and options; a UserError (400) for bad data, an Error (500) if the check itself failed. */
  check(input: JobDataCheckInput): Promise<JobDataCheck> {
    if (this.#stopped) return Promise.reject(shuttingDown());
    return new Promise((resolve, reject) => {
      this.#waiting.push({ id: this.#nextId++, input, resolve, reject });
      this.#dispatch();
    });
  }

  /** Refuses the waiting checks, ends every worker (refusing its check) and waits for them to exit. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const pending of this.#waiting.splice(0)) pending.reject(shuttingDown());
    await Promise.all([...this.#workers].map((entry) => entry.worker.terminate()));
  }

  #dispatch(): void {
    while (!this.#stopped && this.#waiting.length > 0) {
      let entry = [...this.#workers].find((candidate) => !candidate.current && !candidate.retiring);
      if (!entry) {
        if (this.#workers.size >= this.#threads) return;
        entry = this.#spawn();
      }
      clearTimeout(entry.idleTimer);
      const pending = this.#waiting.shift()!;
      entry.current = pending;
      entry.worker.ref();
      entry.checkTimer = setTimeout(() => {
        this.#fail(entry, checkFault(`checking the data set took over ${this.#timeoutMs >= 1000 ? `${Math.round(this.#timeoutMs / 1000)} s` : `${this.#timeoutMs} ms`}; stopped`));
        entry.retiring = true;
        void entry.worker.terminate();
      }, this.#timeoutMs);
      try {
        entry.worker.postMessage({ id: pending.id, input: pending.input });
      } catch (error) {
        this.#fail(entry, checkFault(`cannot send the data set to its check: ${errorMessage(error)}`));
        this.#idle(entry);
      }
    }
  }

  #spawn(): CheckWorker {
    const worker = new Worker(WORKER_ENTRY, { execArgv: [], resourceLimits: this.#resourceLimits });
    const entry: CheckWorker = { worker, current: undefined, checkTimer: undefined, idleTimer: undefined, retiring: false };
    this.#workers.add(entry);
    worker.on('message', (reply: JobDataCheckReply) => {
      const pending = entry.current;
      if (!pending || pending.id !== reply.id) return;
      clearTimeout(entry.checkTimer);
      entry.current = undefined;
      if (reply.type === 'valid') pending.resolve(reply.check);
      else if (reply.type === 'invalid') pending.reject(new ServiceError('bad_request', reply.message));
      else pending.reject(checkFault(`checking the data set failed: ${reply.message}`, reply.stack));
      this.#idle(entry);
      this.#dispatch();
    });
    // An uncaught error ends the worker: its check fails with it, the exit below replaces the worker.
    worker.on('error', (error: unknown) => this.#fail(entry, checkFault(`the data check worker failed: ${errorMessage(error)}`, (error as Error | null)?.stack)));
    worker.on('exit', (code) => {
      clearTimeout(entry.idleTimer);
      this.#workers.delete(entry);
      this.#fail(entry, this.#stopped ? shuttingDown() : checkFault(`the data check worker exited (code ${code}) while checking the data set`));
      this.#dispatch();
    });
    return entry;
  }

  #fail(entry: CheckWorker, error: Error): void {
    clearTimeout(entry.checkTimer);
    const pending = entry.current;
    entry.current = undefined;
    pending?.reject(error);
  }

  #idle(entry: CheckWorker): void {
    // Idle, it never keeps the process alive; checking, it does (ref'd again on dispatch).
    entry.worker.unref();
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      entry.retiring = true;
      void entry.worker.terminate();
    }, this.#idleMs);
    entry.idleTimer.unref();
  }
}

function shuttingDown(): ServiceError {
  return new ServiceError('retry_later', 'the server is shutting down; submit the job again once it is back');
}

/** A fault of the check, not of the data: answered 500, logged with the worker's stack when there is one. */
function checkFault(message: string, stack?: string): Error {
  const fault = new Error(message);
  if (stack) fault.stack = `${message}\n${stack.split('\n').slice(1).join('\n')}`;
  return fault;
}
