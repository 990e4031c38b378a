import type { AssignmentReport, Report } from '../shared/protocol/payloads.ts';

/**
 * Reports the on-disk outbox does not hold, sent straight to the broker so that a full disk does
 * not keep them from the server: those the state file holds while the outbox cannot take them,
 * and those held in memory because the state file could not be written either (a refusal, which
 * changed nothing on disk). Each is sent once; should one come again through the outbox (after a
 * restart), the server ingests a report id once.
 *
 * A refusal held in memory is also kept, sent or not, until a state write records it (see
 * `unrecorded`): a stop before then would lose it when its assignment is no longer pending on disk.
 */
export class DirectReports {
  readonly #held: Report[] = [];
  readonly #unrecorded: AssignmentReport[] = [];
  readonly #sent = new Set<string>();
  #outboxRefuses = false;
  #sending: Promise<void> = Promise.resolve();

  /** Whether reports wait in memory (sent at the next connect or heartbeat). */
  get holding(): boolean {
    return this.#held.length > 0;
  }

  /** Keeps a report until it is sent (a report that describes no state change, or one that could not be written). */
  hold(report: Report): void {
    if (!this.#sent.has(report.id) && !this.#held.some((held) => held.id === report.id)) this.#held.push(report);
  }

  /** Keeps a refusal whose state change could not be written until it is sent, and until a state write records it. */
  holdUnrecorded(report: AssignmentReport): void {
    this.hold(report);
    if (!this.#unrecorded.some((held) => held.id === report.id)) this.#unrecorded.push(report);
  }

  /** The refusals no state write has recorded yet, oldest first. */
  unrecorded(): readonly AssignmentReport[] {
    return [...this.#unrecorded];
  }

  /** Whether a refusal of `assignmentId` waits to be recorded. */
  refused(assignmentId: string): boolean {
    return this.#unrecorded.some((report) => report.assignmentId === assignmentId);
  }

  /** The state file holds the reports `ids` now (its unsent reports): the outbox, or the direct path for those, sends them. */
  recorded(ids: Iterable<string>): void {
    for (const id of ids) {
      for (const list of [this.#unrecorded, this.#held]) {
        const index = list.findIndex((report) => report.id === id);
        if (index >= 0) list.splice(index, 1);
      }
    }
  }

  /** Whether the report was sent directly already (the outbox need not take it). */
  sent(id: string): boolean {
    return this.#sent.has(id);
  }

  /** The outbox refused the state file's reports: send them directly until it takes them. */
  outboxRefused(): void {
    this.#outboxRefuses = true;
  }

  /** The state file's reports `ids` are in the outbox (or were sent directly): they are no concern of this any more. */
  outboxTook(ids: Iterable<string>): void {
    for (const id of ids) this.#sent.delete(id);
    this.#outboxRefuses = false;
  }

  /**
   * Sends what waits (the state file's `unsent` reports when the outbox refused them, and the
   * held ones), in order, until one fails (the broker is away). One send at a time; never rejects.
   */
  send(unsent: readonly Report[], publish: (report: Report) => Promise<void>): Promise<void> {
    this.#sending = this.#sending.then(async () => {
      const waiting = [...(this.#outboxRefuses ? unsent : []), ...this.#held].filter((report) => !this.#sent.has(report.id));
      for (const report of waiting) {
        try {
          await publish(report);
        } catch {
          return; // the next connect or heartbeat sends it
        }
        this.#sent.add(report.id);
        const held = this.#held.findIndex((candidate) => candidate.id === report.id);
        if (held >= 0) this.#held.splice(held, 1);
      }
    });
    return this.#sending;
  }
}
