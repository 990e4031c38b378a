import type { Scheduler } from '../analysis/scheduler.ts';
import type { DeliveryResult } from './fleet-port.ts';

/** How long answers to a running device action gather before they are recorded together. */
export const ANSWER_BATCH_MS = 1000;

/**
 * Gathers devices' answers and hands them on in batches (one per `delayMs`), so a thousand
 * devices answering cost a few commits, not a thousand: the answers a device action receives
 * while it still waits for other devices, or late answers no action waits for any more.
 * `close()` drops what has not been handed on (an action's result carries it).
 */
export class AnswerBatcher<A extends { readonly outcome: string } = DeliveryResult> {
  readonly #scheduler: Scheduler;
  readonly #flush: (results: readonly A[]) => void;
  readonly #delayMs: number;
  #batch: A[] = [];
  #cancel: (() => void) | undefined;
  #closed = false;

  constructor(scheduler: Scheduler, flush: (results: readonly A[]) => void, delayMs = ANSWER_BATCH_MS) {
    this.#scheduler = scheduler;
    this.#flush = flush;
    this.#delayMs = delayMs;
  }

  readonly add = (result: A): void => {
    if (this.#closed || result.outcome === 'offline') return;
    this.#batch.push(result);
    this.#cancel ??= this.#scheduler.schedule(this.#delayMs, () => {
      this.#cancel = undefined;
      const batch = this.#batch;
      this.#batch = [];
      if (!this.#closed && batch.length > 0) this.#flush(batch);
    });
  };

  close(): void {
    this.#closed = true;
    this.#batch = [];
    this.#cancel?.();
    this.#cancel = undefined;
  }
}
