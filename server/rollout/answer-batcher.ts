import type { Scheduler } from '../analysis/scheduler.ts';
import type { DeliveryResult } from './fleet-port.ts';

/** How long answers to a running device action gather before they are recorded together. */
export const ANSWER_BATCH_MS = 1000;

/**
 * Gathers the answers a device action receives while it still waits for other devices, and hands
 * them on in batches (one per `delayMs`), so a thousand devices answering cost a few commits, not
 * a thousand. `close()` drops what has not been handed on: the action's result carries it.
 */
export class AnswerBatcher {
  readonly #scheduler: Scheduler;
  readonly #flush: (results: readonly DeliveryResult[]) => void;
  readonly #delayMs: number;
  #batch: DeliveryResult[] = [];
  #cancel: (() => void) | undefined;
  #closed = false;

  constructor(scheduler: Scheduler, flush: (results: readonly DeliveryResult[]) => void, delayMs = ANSWER_BATCH_MS) {
    this.#scheduler = scheduler;
    this.#flush = flush;
    this.#delayMs = delayMs;
  }

  readonly add = (result: DeliveryResult): void => {
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
