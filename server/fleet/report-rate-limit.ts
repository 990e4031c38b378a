import type { Counter } from 'prom-client';
import { setBounded } from '../../shared/util/bounded-map.ts';
import type { Logger } from '../../shared/util/log.ts';

/**
 * A device may send this many benchmark reports at once (a full bucket) before it is limited.
 * Answers to assignments and fleet commands have a bucket of their own (ANSWER_BURST), so a
 * benchmark flood never holds back an answer a rollout, a rollback or an operator waits on.
 *
 * A legitimate agent never comes near it: it benchmarks a candidate once (one `benchmark`
 * report; a benchmark interrupted by other work or by a stop reports nothing and runs again
 * later, so a rerun still costs one report), and rollout steps are minutes apart. Its largest
 * burst is its outbox flushing after a broker outage or a restart (agent/outbox.ts): what waits
 * there is the benchmark of the candidate in hand, plus repeats of reports sent just before a
 * crash (same ids, counted here too).
 */
export const REPORT_BURST = 10;
/** One more report is allowed per this interval, up to REPORT_BURST (30 a minute sustained). */
export const REPORT_REFILL_MS = 2_000;
/**
 * A device may send this many answers (assignment reports) at once, then one per
 * ANSWER_REFILL_MS. It sends one per assignment or fleet command the server sent it (two for a
 * candidate whose benchmark fails: `installed`, then `benchmark-failed`; again for an assignment
 * taken again to restore a lost model), and the largest burst is its outbox after an outage: the
 * answers to the commands its broker session queued meanwhile. Far above that, and still a bound
 * on the store transactions a device sending made-up answers (each with a fresh id) costs.
 */
export const ANSWER_BURST = 30;
/** One more answer per this interval, up to ANSWER_BURST (60 a minute sustained). */
export const ANSWER_REFILL_MS = 1_000;
/** How often (at most) a limited device is logged. */
export const REPORT_LIMIT_LOG_EVERY_MS = 60_000;
/**
 * Devices whose buckets are remembered. Beyond it the least recently reporting device is
 * forgotten (its next report finds a full bucket): memory stays bounded however many device ids
 * report. A device's bucket is full again after REPORT_BURST × REPORT_REFILL_MS (20 s) anyway.
 */
export const REPORT_LIMIT_MAX_DEVICES = 100_000;

export interface ReportRateLimitOptions {
  /** Device messages dropped, by kind and reason: the reports refused here count as kind `reports` and `reason`. */
  dropped: Counter<'kind' | 'reason'>;
  logger: Logger;
  /** The drop reason (default `report-rate-limited`; the answers' bucket says `answer-rate-limited`). */
  reason?: string;
  /** What the bucket limits, for the log line (default `reports`). */
  subject?: string;
  /** Bucket size (default REPORT_BURST). */
  burst?: number;
  /** One token back per this many ms (default REPORT_REFILL_MS). */
  refillMs?: number;
  logEveryMs?: number;
  maxDevices?: number;
  /** Milliseconds clock (default Date.now); tests inject one. */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Warned {
  /** When the current log window of the device began. */
  since: number;
  /** Reports dropped in the window and not logged yet. */
  unlogged: number;
  timer?: NodeJS.Timeout;
}

/**
 * Bounds the store writes a device's reports cost: a token bucket per device (REPORT_BURST
 * reports at once, then one per REPORT_REFILL_MS). A report beyond it is dropped before it
 * reaches the store — never held: each report is distinct evidence, but a device sending more
 * than this is broken or hostile — and counted in `fleetprune_fleet_dropped_messages_total`
 * with kind `reports` and reason `report-rate-limited`. The device is logged (warn) at once, then
 * at most once per REPORT_LIMIT_LOG_EVERY_MS with how many were dropped since the last line.
 */
export class ReportRateLimit {
  readonly #options: ReportRateLimitOptions;
  readonly #buckets = new Map<string, Bucket>();
  readonly #warned = new Map<string, Warned>();

  constructor(options: ReportRateLimitOptions) {
    this.#options = options;
  }

  get #burst(): number {
    return this.#options.burst ?? REPORT_BURST;
  }

  get #refillMs(): number {
    return this.#options.refillMs ?? REPORT_REFILL_MS;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  /** Takes a token for one report of `deviceId`: false (counted and logged) when the device is over its limit. */
  admit(deviceId: string): boolean {
    const now = this.#now();
    const burst = this.#burst;
    const bucket = this.#buckets.get(deviceId);
    // Time going backwards (a clock step) refills nothing and takes nothing.
    const tokens = bucket ? Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) / this.#refillMs) : burst;
    const allowed = tokens >= 1;
    setBounded(this.#buckets, deviceId, { tokens: allowed ? tokens - 1 : tokens, at: Math.max(now, bucket?.at ?? now) }, this.#options.maxDevices ?? REPORT_LIMIT_MAX_DEVICES);
    if (!allowed) this.#dropped(deviceId, now);
    return allowed;
  }

  /** Logs what was dropped and not logged yet, and stops the log timers (at shutdown). */
  close(): void {
    for (const [deviceId, warned] of this.#warned) {
      clearTimeout(warned.timer);
      if (warned.unlogged > 0) this.#log(deviceId, warned.unlogged);
    }
    this.#warned.clear();
  }

  /** Tracked devices (for tests: memory stays bounded). */
  get trackedDevices(): number {
    return this.#buckets.size;
  }

  #dropped(deviceId: string, now: number): void {
    this.#options.dropped.inc({ kind: 'reports', reason: this.#options.reason ?? 'report-rate-limited' });
    const every = this.#options.logEveryMs ?? REPORT_LIMIT_LOG_EVERY_MS;
    const warned = this.#warned.get(deviceId);
    if (warned && now - warned.since < every) {
      // Within the window: logged when it ends, in one line.
      warned.unlogged++;
      warned.timer ??= setTimeout(() => this.#endWindow(deviceId, warned), Math.max(0, warned.since + every - now)).unref();
      return;
    }
    clearTimeout(warned?.timer);
    const fresh: Warned = { since: now, unlogged: 0 };
    setBounded(this.#warned, deviceId, fresh, this.#options.maxDevices ?? REPORT_LIMIT_MAX_DEVICES);
    this.#log(deviceId, 1);
  }

  #endWindow(deviceId: string, warned: Warned): void {
    if (this.#warned.get(deviceId) !== warned) return;
    this.#warned.delete(deviceId);
    if (warned.unlogged > 0) {
      // The line starts the next window: a device that keeps flooding is logged once per window.
      this.#warned.set(deviceId, { since: this.#now(), unlogged: 0 });
      this.#log(deviceId, warned.unlogged);
    }
  }

  #log(deviceId: string, dropped: number): void {
    this.#options.logger.warn(
      { deviceId, droppedSinceLastLine: dropped, burst: this.#burst, refillMs: this.#refillMs },
      `device sends ${this.#options.subject ?? 'reports'} faster than ${this.#burst} at once and one per ${this.#refillMs} ms after that; the ones beyond are dropped (not stored)`,
    );
  }
}
