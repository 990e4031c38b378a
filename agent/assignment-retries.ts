/** The first wait before an assignment that failed on the device (its disk) is taken again; it doubles up to the longest. */
export const ASSIGNMENT_RETRY_MS = 30_000;
export const MAX_ASSIGNMENT_RETRY_MS = 10 * 60_000;

/** One assignment's retry: its timer, its current wait, and whether it has run since it was scheduled. */
interface RetryTimer {
  timer: NodeJS.Timeout | undefined;
  delayMs: number;
  ran: boolean;
  run: () => void;
}

/**
 * The timers that take again an assignment whose handling failed on the device, with a backoff per
 * assignment (doubling from `firstMs` to `maxMs`), so a full disk that clears is noticed without
 * waiting for the broker to deliver the assignment again.
 */
export class AssignmentRetries {
  readonly #timers = new Map<string, RetryTimer>();

  constructor(
    readonly firstMs = ASSIGNMENT_RETRY_MS,
    readonly maxMs = MAX_ASSIGNMENT_RETRY_MS,
  ) {}

  /** Runs `retry` for assignment `id` after the next wait of its backoff; returns that wait. */
  schedule(id: string, retry: () => void): number {
    const previous = this.#timers.get(id);
    clearTimeout(previous?.timer);
    const delayMs = previous ? Math.min(previous.delayMs * 2, Math.max(this.maxMs, this.firstMs)) : this.firstMs;
    const entry: RetryTimer = {
      timer: undefined,
      delayMs,
      ran: false,
      run: () => {
        entry.ran = true;
        retry();
      },
    };
    entry.timer = setTimeout(entry.run, delayMs).unref();
    this.#timers.set(id, entry);
    return delayMs;
  }

  /**
   * Runs every waiting retry now (what held them back has cleared: the disk takes writes again);
   * each keeps its backoff, so one that fails again waits longer than before.
   */
  retryAllNow(): void {
    for (const entry of this.#timers.values()) {
      if (entry.ran) continue; // taken again already; a failure schedules it anew
      clearTimeout(entry.timer);
      entry.timer = setTimeout(entry.run, 0).unref();
    }
  }

  /** The assignment is answered: no retry, and a later failure starts the backoff afresh. */
  done(id: string): void {
    clearTimeout(this.#timers.get(id)?.timer);
    this.#timers.delete(id);
  }

  clear(): void {
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
