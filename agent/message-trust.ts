import type { KeyObject } from 'node:crypto';
import { assignmentSignatureVerifies, commandSignatureVerifies } from '../shared/protocol/message-signature.ts';
import { AGENT_DROP_WORDS, DroppedMessageLog } from '../shared/util/dropped-message-log.ts';
import type { Logger } from '../shared/util/log.ts';
import type { AgentMetrics } from './agent-metrics.ts';
import type { SlotState } from './slot-state.ts';

/** The two streams of signed, numbered messages the agent acts on. */
export type MessageStream = 'assignment' | 'command';

/**
 * Decides whether the agent acts on an assignment or fleet command received: signed by the server
 * and newer than the newest of its stream taken so far.
 */
export class MessageTrust {
  /** The newest sequence numbers taken in this run (the state file holds those of taken messages across runs). */
  readonly newestSeq: Record<MessageStream, { seq: number; id: string | null }> = { assignment: { seq: -1, id: null }, command: { seq: -1, id: null } };

  constructor(
    readonly deviceId: string,
    readonly publicKey: KeyObject,
    readonly metrics: Pick<AgentMetrics, 'droppedMessages'>,
    readonly logger: Logger,
    /** The agent's slot state of now. */
    readonly state: () => SlotState,
  ) {
    this.#refusals = new DroppedMessageLog(logger, { words: AGENT_DROP_WORDS });
  }

  /** Refusals are logged a line a minute per stream and reason (each counted): a flood of forged or replayed messages cannot fill the device's disk. */
  readonly #refusals: DroppedMessageLog;

  /**
   * Whether to act on an assignment or fleet command: it must carry the server's signature (for
   * this device, for an assignment) and be newer than the newest of its stream taken so far, so a
   * message replayed from the broker (an old version, an old rollback) is refused. Refusals are
   * logged and counted, never answered: the message did not come from the server. `again`: the
   * newest message taken may be taken again (it restores a lost model).
   */
  trusted(stream: MessageStream, raw: unknown, id: string, seq: number, again = false): boolean {
    const signed = stream === 'assignment' ? assignmentSignatureVerifies(this.deviceId, raw, this.publicKey) : commandSignatureVerifies(raw, this.publicKey);
    const kind = stream === 'assignment' ? 'assignment' : 'commands';
    if (!signed) {
      this.metrics.droppedMessages.inc({ kind, reason: 'bad-signature' });
      this.#refusals.dropped(
        `${kind}:bad-signature`,
        { id, stream },
        `refused ${stream === 'assignment' ? 'an assignment' : 'a fleet command'} whose signature does not verify with the server key in the device's config (serverPublicKey): ` +
          'forged or damaged, or the server\'s key changed since the device was enrolled (then enroll it again)',
      );
      return false;
    }
    const state = this.state();
    const persisted = stream === 'assignment' ? state.assignmentSeq : state.commandSeq;
    const newest = Math.max(this.newestSeq[stream].seq, persisted ?? -1);
    if (seq === newest) {
      // The newest message taken, again: the same message (a number is used once per device and
      // stream). Taken again while its handling has not finished (a retained assignment
      // redelivered after a failure); otherwise it was handled, longer ago than the ids kept.
      if (id === this.newestSeq[stream].id || id === state.pending?.id || again) return true;
      this.logger.debug({ id, stream, seq }, 'ignored a message already taken');
      return false;
    }
    if (seq < newest) {
      this.metrics.droppedMessages.inc({ kind, reason: 'replayed' });
      this.#refusals.dropped(`${kind}:replayed`, { id, stream, seq, newest }, `refused ${stream === 'assignment' ? 'an assignment' : 'a fleet command'} older than one already taken (a replay)`);
      return false;
    }
    this.newestSeq[stream] = { seq, id };
    return true;
  }
}
