/**
 * Time for the analysis engine and the rollout controller, injected so tests run fast and
 * deterministically. SystemScheduler is real time; ManualScheduler moves only when told.
 */
export interface Scheduler {
  now(): Date;
  /** Runs `task` after `delayMs`; returns a function that cancels it. */
  schedule(delayMs: number, task: () => void): () => void;
}

export class SystemScheduler implements Scheduler {
  now(): Date {
    return new Date();
  }

  /**
   * setTimeout fires at once (after 1 ms) for a delay over 2^31 − 1 ms (~24.8 days), so a long
   * delay is waited for in steps of at most MAX_TIMER_MS until the due time.
   */
  schedule(delayMs: number, task: () => void): () => void {
    const dueAt = Date.now() + Math.max(0, delayMs);
    let timer: NodeJS.Timeout;
    const arm = () => {
      const left = dueAt - Date.now();
      timer = setTimeout(left > MAX_TIMER_MS ? arm : task, Math.min(Math.max(0, left), MAX_TIMER_MS));
      timer.unref?.();
    };
    arm();
    return () => clearTimeout(timer);
  }
}

/** The longest delay setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly task: () => void;
}

/** A scheduler for tests: time advances only through advance()/runUntilIdle(). */
export class ManualScheduler implements Scheduler {
  #now: number;
  #seq = 0;
  #pending: Pending[] = [];

  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  schedule(delayMs: number, task: () => void): () => void {
    const entry: Pending = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, task };
    this.#pending.push(entry);
    return () => {
      this.#pending = this.#pending.filter((pending) => pending !== entry);
    };
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  /**
   * Moves time forward by `ms`, running due tasks in time order; after each task it lets
   * promise chains settle (the tasks' async work against in-memory fakes), so state observed
   * after `await advance()` is final.
   */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    await settle();
    for (;;) {
      const next = this.#pending.filter((p) => p.at <= until).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#pending = this.#pending.filter((p) => p !== next);
      this.#now = Math.max(this.#now, next.at);
      next.task();
      await settle();
    }
    this.#now = until;
    await settle();
  }
}

/** Lets pending promise callbacks and immediates run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}
