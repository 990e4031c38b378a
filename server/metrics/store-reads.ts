import { errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';

export interface StoreReadsOptions {
  /** A cheap query that answers when the store does (e.g. SELECT 1). */
  probe: () => Promise<unknown>;
  log?: Logger;
  /** How long a probe or a read may take before it counts as failed (default 2 s). */
  timeoutMs?: number;
  /** At most one "the store is unreachable" line per this (default 5 min). */
  logEveryMs?: number;
}

/**
 * The store reads behind /metrics. A scrape must answer while the database is down or slow:
 * otherwise Prometheus sees the whole server down (the wrong alert) and loses every other series,
 * the rollouts' included, just when they matter. So a scrape waits at most `timeoutMs` for each
 * read and never fails, and a store that fails the probe is not read at all.
 *
 * One probe, and one read per key, in flight at a time, until the query itself settles (not only
 * until the scrape stops waiting for it): a scrape every few seconds against a database that does
 * not answer (or a table locked for a while) would otherwise pile its queries into the pool until
 * the server's own requests found no connection. A scrape that finds one still in flight waits
 * for that one (within its own timeout) instead of sending another.
 */
export class StoreReads {
  readonly #options: StoreReadsOptions;
  #probing: Promise<boolean> | undefined;
  readonly #reading = new Map<string, Promise<number | undefined>>();
  #up = true;
  #lastLoggedAt = -Infinity;
  #loggedDown = false;

  constructor(options: StoreReadsOptions) {
    this.#options = options;
  }

  /** Whether the store answers the probe now; false when it fails or does not answer in time. */
  async up(): Promise<boolean> {
    this.#probing ??= this.#options
      .probe()
      .then(
        () => this.#settled(null),
        (error: unknown) => this.#settled(error),
      )
      .finally(() => {
        this.#probing = undefined;
      });
    const answered = await this.#within(this.#probing);
    if (answered === undefined) return this.#settled(new Error(`no answer within ${this.#timeoutMs} ms`));
    return answered;
  }

  /** `read`'s value; undefined when the store is down, or the read fails or does not answer in time. */
  async read(key: string, read: () => Promise<number>): Promise<number | undefined> {
    if (!(await this.up())) return undefined;
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = read()
        .catch((error: unknown) => {
          this.#options.log?.debug({ err: errorMessage(error), metric: key }, 'a store read for /metrics failed; the metric keeps its last value');
          return undefined;
        })
        .finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return this.#within(reading);
  }

  /** Logs a store that stopped answering (at most once per logEveryMs), and then when it answers again. */
  #settled(error: unknown): boolean {
    const up = error === null;
    const now = Date.now();
    if (!up && this.#up && now - this.#lastLoggedAt >= (this.#options.logEveryMs ?? 300_000)) {
      this.#lastLoggedAt = now;
      this.#loggedDown = true;
      this.#options.log?.error({ err: errorMessage(error) }, 'the store does not answer; /metrics reports fleetprune_store_up 0 and the last values of the store\'s gauges');
    } else if (up && this.#loggedDown) {
      this.#loggedDown = false;
      this.#options.log?.info('the store answers /metrics again');
    }
    this.#up = up;
    return up;
  }

  get #timeoutMs(): number {
    return this.#options.timeoutMs ?? 2000;
  }

  /** What `work` gives within the timeout; undefined when it is not back by then (it goes on). */
  #within<T>(work: Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), this.#timeoutMs);
      timer.unref();
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }
}
