import type { AssignmentReport } from '../../shared/protocol/payloads.ts';

export type AssignmentOutcome = AssignmentReport['outcome'];

type Waiter = (outcome: AssignmentOutcome, reason: string | null) => void;

/**
 * In-process notifications of devices' answers to assignments and commands (the ingest calls
 * `answered` after storing an assignment report), so a caller can wait for a device to answer.
 */
export class AssignmentOutcomes {
  readonly #waiters = new Map<string, Set<Waiter>>();

  /** Tells whoever waits for this answer; false when nobody did (the wait was over, or never began). */
  answered(report: Pick<AssignmentReport, 'assignmentId' | 'deviceId' | 'outcome' | 'reason'>): boolean {
    const waiters = [...(this.#waiters.get(key(report.assignmentId, report.deviceId)) ?? [])];
    for (const waiter of waiters) waiter(report.outcome, report.reason);
    return waiters.length > 0;
  }

  /** The device's first answer to `assignmentId` after this call, or null after `timeoutMs`. */
  waitFor(assignmentId: string, deviceId: string, timeoutMs: number): { promise: Promise<{ outcome: AssignmentOutcome; reason: string | null } | null>; cancel(): void } {
    const id = key(assignmentId, deviceId);
    let finish: (value: { outcome: AssignmentOutcome; reason: string | null } | null) => void = () => {};
    const promise = new Promise<{ outcome: AssignmentOutcome; reason: string | null } | null>((resolve) => (finish = resolve));
    const waiter: Waiter = (outcome, reason) => done({ outcome, reason });
    const timer = setTimeout(() => done(null), timeoutMs);
    timer.unref();
    const done = (value: { outcome: AssignmentOutcome; reason: string | null } | null) => {
      clearTimeout(timer);
      const set = this.#waiters.get(id);
      set?.delete(waiter);
      if (set?.size === 0) this.#waiters.delete(id);
      finish(value);
    };
    if (!this.#waiters.has(id)) this.#waiters.set(id, new Set());
    this.#waiters.get(id)!.add(waiter);
    return { promise, cancel: () => done(null) };
  }
}

function key(assignmentId: string, deviceId: string): string {
  return `${deviceId}\u0000${assignmentId}`;
}
