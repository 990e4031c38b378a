import { Worker, type ResourceLimits } from 'node:worker_threads';
import { errorMessage } from '../../shared/util/errors.ts';

/** A task sent to a pool's worker; `id` pairs it with its answer. */
export interface WorkerRequest<In> {
  id: number;
  input: In;
}

/** A worker's answer: the result, the task's refusal of its input, or a fault of the task. */
export type WorkerReply<Out> = { id: number; type: 'valid'; result: Out } | { id: number; type: 'invalid'; message: string } | { id: number; type: 'error'; message: string; stack?: string };

export interface WorkerPoolOptions {
  /** Tasks running at once (each a worker thread); more wait their turn. */
  threads?: number;
  /** An idle worker is ended after this long (it gives back the memory of its last task). */
  idleMs?: number;
  /** A task taking longer is stopped with its worker. */
  timeoutMs?: number;
  /** Tasks that may wait for a worker; one more is refused at once (`busy`). Unbounded if not given. */
  maxWaiting?: number;
  /** Per-worker limits (tests make a worker run out of memory with them). */
  resourceLimits?: ResourceLimits;
}

/** What a pool's failures are, in its callers' words. */
export interface WorkerPoolWords {
  /** A task refused because the pool stopped (the server shutting down). */
  shuttingDown(): Error;
  /** A task refused because `waiting` tasks already wait for a worker (`maxWaiting`). */
  busy(waiting: number): Error;
  /** The task's refusal of its input (the worker answered `invalid`). */
  invalid(message: string): Error;
  /** A task over the time limit (`limit`: "50 ms", "10 s"); its worker is ended. */
  timedOut(limit: string): Error;
  /** A fault of the task or its worker, not of the input: `what` happened (see the other words). */
  fault(message: string, stack?: string): Error;
  /** The task failed in its worker: "checking the data set failed: …". */
  failed(message: string): string;
  /** The worker itself failed, or exited mid-task, or the task could not be sent to it. */
  workerFailed(message: string): string;
  workerExited(code: number): string;
  cannotSend(message: string): string;
}

interface Pending<In, Out> {
  id: number;
  input: In;
  resolve: (result: Out) => void;
  reject: (error: Error) => void;
}

interface PoolWorker<In, Out> {
  worker: Worker;
  current: Pending<In, Out> | undefined;
  /** Ends the current task if it runs too long. */
  taskTimer: NodeJS.Timeout | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  /** Ended (idle, or over its time): takes no task (one dispatched to it would die with it), counts until it exits. */
  retiring: boolean;
}

/**
 * Runs tasks in worker threads started from `entry`, so that work which could block (parsing a
 * large data set, running a model nobody has run yet) never blocks the server's event loop. At
 * most `threads` workers, started when needed, each running one task at a time and ended once
 * idle for `idleMs`; at most `maxWaiting` tasks wait their turn (each holds its input in memory),
 * one more is refused at once. A task over `timeoutMs` is failed and its worker ended (for JavaScript work:
 * a thread stuck in native code cannot be ended, see model-check-runner.ts). A worker that fails
 * or dies fails only its own task; after stop() every task, waiting or running, is refused as the
 * server shutting down.
 */
export class WorkerPool<In, Out> {
  readonly #entry: URL;
  readonly #words: WorkerPoolWords;
  readonly #threads: number;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  readonly #resourceLimits: ResourceLimits | undefined;
  readonly #maxWaiting: number;
  readonly #workers = new Set<PoolWorker<In, Out>>();
  readonly #waiting: Pending<In, Out>[] = [];
  #nextId = 1;
  #stopped = false;

  constructor(entry: URL, words: WorkerPoolWords, options: WorkerPoolOptions & { threads: number; idleMs: number; timeoutMs: number }) {
    this.#entry = entry;
    this.#words = words;
    this.#threads = Math.max(1, options.threads);
    this.#idleMs = options.idleMs;
    this.#timeoutMs = options.timeoutMs;
    this.#resourceLimits = options.resourceLimits;
    this.#maxWaiting = options.maxWaiting ?? Number.POSITIVE_INFINITY;
  }

  /** Worker threads alive now (at most `threads`). */
  get threads(): number {
    return this.#workers.size;
  }

  run(input: In): Promise<Out> {
    if (this.#stopped) return Promise.reject(this.#words.shuttingDown());
    return new Promise((resolve, reject) => {
      this.#waiting.push({ id: this.#nextId++, input, resolve, reject });
      this.#dispatch();
      // Refused only when it would really wait: a free (or startable) worker took it above.
      if (this.#waiting.length > this.#maxWaiting) {
        const refused = this.#waiting.pop()!;
        refused.reject(this.#words.busy(this.#waiting.length));
      }
    });
  }

  /** Refuses the waiting tasks, ends every worker (refusing its task) and waits for them to exit. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const pending of this.#waiting.splice(0)) pending.reject(this.#words.shuttingDown());
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
      const running = entry;
      running.taskTimer = setTimeout(() => {
        this.#fail(running, this.#words.timedOut(this.#timeoutMs >= 1000 ? `${Math.round(this.#timeoutMs / 1000)} s` : `${this.#timeoutMs} ms`));
        // Counted (and waited for by stop()) until it has exited: the thread cap holds.
        running.retiring = true;
        void running.worker.terminate();
      }, this.#timeoutMs);
      try {
        entry.worker.postMessage({ id: pending.id, input: pending.input } satisfies WorkerRequest<In>);
      } catch (error) {
        this.#fail(entry, this.#words.fault(this.#words.cannotSend(errorMessage(error))));
        this.#idle(entry);
      }
    }
  }

  #spawn(): PoolWorker<In, Out> {
    const worker = new Worker(this.#entry, { execArgv: [], resourceLimits: this.#resourceLimits });
    const entry: PoolWorker<In, Out> = { worker, current: undefined, taskTimer: undefined, idleTimer: undefined, retiring: false };
    this.#workers.add(entry);
    worker.on('message', (reply: WorkerReply<Out>) => {
      const pending = entry.current;
      if (!pending || pending.id !== reply.id) return;
      clearTimeout(entry.taskTimer);
      entry.current = undefined;
      if (reply.type === 'valid') pending.resolve(reply.result);
      else if (reply.type === 'invalid') pending.reject(this.#words.invalid(reply.message));
      else pending.reject(this.#words.fault(this.#words.failed(reply.message), reply.stack));
      this.#idle(entry);
      this.#dispatch();
    });
    // An uncaught error ends the worker: its task fails with it, the exit below replaces the worker.
    worker.on('error', (error: unknown) => this.#fail(entry, this.#words.fault(this.#words.workerFailed(errorMessage(error)), (error as Error | null)?.stack)));
    worker.on('exit', (code) => {
      clearTimeout(entry.idleTimer);
      this.#workers.delete(entry);
      this.#fail(entry, this.#stopped ? this.#words.shuttingDown() : this.#words.fault(this.#words.workerExited(code)));
      this.#dispatch();
    });
    return entry;
  }

  #fail(entry: PoolWorker<In, Out>, error: Error): void {
    clearTimeout(entry.taskTimer);
    const pending = entry.current;
    entry.current = undefined;
    pending?.reject(error);
  }

  #idle(entry: PoolWorker<In, Out>): void {
    // Idle, it never keeps the process alive; running a task, it does (ref'd again on dispatch).
    entry.worker.unref();
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      entry.retiring = true;
      void entry.worker.terminate();
    }, this.#idleMs);
    entry.idleTimer.unref();
  }
}
