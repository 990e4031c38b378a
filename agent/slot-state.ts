import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AssignmentSchema, ModelRefSchema, ReportSchema, type ModelRef } from '../shared/protocol/payloads.ts';
import { writeFileAtomic } from '../shared/util/atomic-file.ts';

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
  /** An assignment received but not finished; resumed after a restart. */
  pending: AssignmentSchema.nullable(),
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

  /** Reads the file; a missing file is the empty state, a corrupt one is an error naming it. */
  async load(): Promise<SlotState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return (this.#state = EMPTY_STATE);
      throw error;
    }
    const parsed = SlotStateSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`${this.path}: not a valid agent state file`);
    return (this.#state = parsed.data);
  }

  async save(next: SlotState): Promise<void> {
    await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`);
    this.#state = next;
  }
}
