import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { DeviceReportsRepository } from '../store/repositories/device-reports-repository.ts';

const DAY_MS = 86_400_000;

export interface ReportRetentionOptions {
  reports: Pick<DeviceReportsRepository, 'deleteReceivedBefore'>;
  /** Days a report is kept after it arrived; 0 keeps every report. */
  days: number;
  /** How often the sweep runs (the first one runs at start). */
  everyMs: number;
  log: Logger;
  clock?: () => Date;
}

/**
 * Deletes device reports (assignment answers, benchmarks) older than --report-retention-days, at
 * start and then periodically, so the report table grows with the retention window, not with
 * the fleet's whole history. A failed sweep is logged and tried again at the next one.
 */
export class ReportRetention {
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;

  constructor(private readonly options: ReportRetentionOptions) {}

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

  /** One sweep; resolves to the number of reports deleted (0 when it failed, or reports are kept for ever). */
  sweep(): Promise<number> {
    if (this.options.days === 0) return Promise.resolve(0);
    this.#sweeping ??= this.#deleteOld().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #deleteOld(): Promise<number> {
    const { reports, days, log } = this.options;
    const cutoff = new Date((this.options.clock?.() ?? new Date()).getTime() - days * DAY_MS);
    try {
      const deleted = await reports.deleteReceivedBefore(cutoff);
      if (deleted > 0) log.info({ deleted, before: cutoff.toISOString() }, `deleted device reports older than ${days} days (--report-retention-days)`);
      return deleted;
    } catch (error) {
      log.warn({ err: errorMessage(error) }, 'deleting old device reports failed; trying again at the next sweep');
      return 0;
    }
  }
}
