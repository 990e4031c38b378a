import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';

const DAY_MS = 86_400_000;

export interface RetentionSweepOptions {
  /** What the sweep removes, for its log lines: `device reports`. */
  what: string;
  /** The past tense of what it does to them: `deleted`. */
  done: string;
  /** Removes what is older than `cutoff`; resolves to how many rows it changed. */
  removeBefore(cutoff: Date): Promise<number>;
  /** Days data is kept (--report-retention-days); 0 keeps it for ever. */
  days: number;
  /** How often the sweep runs (the first one runs at start). */
  everyMs: number;
  log: Logger;
  clock?: () => Date;
}

/**
 * Removes data older than --report-retention-days, at start and then periodically, so a table
 * grows with the retention window, not with the fleet's whole history. A failed sweep is logged
 * and tried again at the next one.
 */
export class RetentionSweep {
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;

  constructor(private readonly options: RetentionSweepOptions) {}

  start(): void {
    if (this.options.days === 0 || this.#timer) return;
    void this.sweep();
    this.#timer = setInterval(() => void this.sweep(), this.options.everyMs);
    this.#timer.unref();
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
  }

  /** One sweep; resolves to the number of rows changed (0 when it failed, or data is kept for ever). */
  sweep(): Promise<number> {
    if (this.options.days === 0) return Promise.resolve(0);
    this.#sweeping ??= this.#removeOld().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #removeOld(): Promise<number> {
    const { what, done, days, log } = this.options;
    const cutoff = new Date((this.options.clock?.() ?? new Date()).getTime() - days * DAY_MS);
    try {
      const changed = await this.options.removeBefore(cutoff);
      if (changed > 0) log.info({ [done]: changed, before: cutoff.toISOString() }, `${done} ${what} older than ${days} days (--report-retention-days)`);
      return changed;
    } catch (error) {
      log.warn({ err: errorMessage(error) }, `removing old ${what} failed; trying again at the next sweep`);
      return 0;
    }
  }
}
