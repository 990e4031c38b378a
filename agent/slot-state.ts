import { readFile, rename } from 'node:fs/promises';
import { z } from 'zod';
import { AssignmentSchema, ModelRefSchema, ReportSchema, type ModelRef } from '../shared/protocol/payloads.ts';
import { writeFileAtomic } from '../shared/util/atomic-file.ts';
import { describeZodError, errorMessage } from '../shared/util/errors.ts';

/** How many handled assignment/command ids the agent remembers (retained messages come back on reconnect). */
const HANDLED_IDS_KEPT = 64;

export const SlotStateSchema = z.object({
  schema: z.literal(1),
  active: ModelRefSchema.nullable(),
  candidate: ModelRefSchema.nullable(),
  /** The active model before the last activation, kept on disk for a rollback without download. */
  previous: ModelRefSchema.nullable(),
  /** Whether the current candidate's benchmark report is in the outbox. */
  candidateBenchmarked: z.boolean(),
  /** The assignment that installed the current candidate (its benchmark, resumed after a restart, answers it). */
  candidateAssignmentId: z.string().optional(),
  /** The sequence numbers of the newest assignment and fleet command taken (older ones are replays, refused). */
  assignmentSeq: z.number().int().optional(),
  commandSeq: z.number().int().optional(),
  /**
   * An assignment received but not finished; resumed after a restart. Taken before it was saved,
   * it is not checked again: one saved by an agent from before assignments were signed has no
   * number or signature, and must not make the whole state unreadable.
   */
  pending: AssignmentSchema.extend({ seq: z.number().int().min(0).default(0), signature: z.string().default('') }).nullable(),
  handledIds: z.array(z.string()),
  /**
   * Reports committed together with the state change they describe and not yet moved into the
   * outbox (a transactional outbox: after a crash they are moved on startup).
   */
  unsentReports: z.array(ReportSchema),
});
export type SlotState = z.infer<typeof SlotStateSchema>;

export const EMPTY_STATE: SlotState = { schema: 1, active: null, candidate: null, previous: null, candidateBenchmarked: true, pending: null, handledIds: [], unsentReports: [] };

export function sameModel(a: ModelRef | null, b: ModelRef | null): boolean {
  return a !== null && b !== null && a.sha256 === b.sha256;
}

export function withHandled(state: SlotState, id: string): SlotState {
  return { ...state, handledIds: [...state.handledIds.filter((known) => known !== id), id].slice(-HANDLED_IDS_KEPT) };
}

/** The state file exists but does not hold a valid state (a disk fault, or a hand edit). */
export class CorruptStateError extends Error {
  override readonly name = 'CorruptStateError';
}

/**
 * The agent's slot state in one JSON file. Every change replaces the whole file atomically
 * (temp file, fsync, rename, fsync of the directory), so after kill -9 at any instant the file
 * is either the old or the new state.
 */
export class SlotStateFile {
  #state: SlotState = EMPTY_STATE;
  constructor(readonly path: string) {}

  get state(): SlotState {
    return this.#state;
  }

  /** Reads the file; a missing file is the empty state, a corrupt one a CorruptStateError naming it. */
  async load(): Promise<SlotState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      const failure = error as NodeJS.ErrnoException;
      if (failure.code === 'ENOENT') return (this.#state = EMPTY_STATE);
      failure.path ??= this.path; // readFile of a directory (EISDIR) does not name it
      throw failure;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new CorruptStateError(`${this.path}: not JSON (${errorMessage(error)})`);
    }
    const parsed = SlotStateSchema.safeParse(json);
    if (!parsed.success) throw new CorruptStateError(`${this.path}: not a valid agent state file (${describeZodError(parsed.error)})`);
    return (this.#state = parsed.data);
  }

  /** Renames a corrupt file out of the way (kept for inspection) and returns its new path; the state is empty again. */
  async setAside(now: Date): Promise<string> {
    const aside = `${this.path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.path, aside);
    this.#state = EMPTY_STATE;
    return aside;
  }

  async save(next: SlotState): Promise<void> {
    await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`);
    this.#state = next;
  }
}
