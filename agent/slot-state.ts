import { constants as os } from 'node:os';
import { rename } from 'node:fs/promises';
import { z } from 'zod';
import { AssignmentReportSchema, AssignmentSchema, FleetCommandSchema, ModelRefSchema, ReportSchema, type Assignment, type AssignmentReport, type ModelRef, type Report } from '../shared/protocol/payloads.ts';
import { writeFileAtomic } from '../shared/util/atomic-file.ts';
import { UserError, describeZodError, errorMessage } from '../shared/util/errors.ts';
import { NotARegularFileError, readRegularFile } from '../shared/util/read-regular-file.ts';

/**
 * The largest state file read. A real one is a few KiB (64 handled ids, three slots, the reports of
 * a few steps); a larger one is not a state this agent wrote, and is set aside like a corrupt one.
 */
export const MAX_STATE_FILE_BYTES = 16 * 1024 * 1024;

/** How many handled assignment/command ids the agent remembers (retained messages come back on reconnect). */
const HANDLED_IDS_KEPT = 64;

export const SLOTS = ['active', 'candidate', 'previous'] as const;

const LostModelSchema = ModelRefSchema.extend({
  slot: z.enum(SLOTS),
  /** Why it failed verification (one line). */
  reason: z.string(),
  /** When it was dropped: the answers of the assignment taken again to restore it carry it in their ids, so the server takes them as new. */
  at: z.string(),
  /** Whether the server has been told (as a refusal of the message that put it there, when one is on record). */
  reported: z.boolean(),
  /**
   * The model its signed manifest names, when the manifest verified (a state file may name it
   * otherwise, `model`): a later start judges the fallback to the previous model by it. Absent in older state files.
   */
  signedModel: z.string().optional(),
});
export type LostModel = z.infer<typeof LostModelSchema>;

/** An assignment or fleet command id, as the reports that name it require (else a report built from it would throw). */
const AnsweredId = AssignmentReportSchema.shape.assignmentId;

/** The state file format this agent writes and reads. */
const STATE_SCHEMA = 1;

export const SlotStateSchema = z.object({
  schema: z.literal(STATE_SCHEMA),
  active: ModelRefSchema.nullable(),
  candidate: ModelRefSchema.nullable(),
  /** The active model before the last activation, kept on disk for a rollback without download. */
  previous: ModelRefSchema.nullable(),
  /** Whether the current candidate's benchmark report is in the outbox. */
  candidateBenchmarked: z.boolean(),
  /**
   * Benchmarks of the current candidate (by artifact id) whose candidate part started and never
   * ended, saved as it starts (after the active model's part): one the agent died in (killed for
   * memory by a candidate whose work grows with its rows, a crash in onnxruntime) is counted here,
   * and after BENCHMARK_DEATHS_REFUSED of them the candidate is reported benchmark-failed instead of
   * benchmarked again at every restart; that verdict stays while the candidate does (it is not
   * activated). Dropped once the candidate leaves its slot, is benchmarked to the end, or is assigned again.
   */
  benchmarkStarts: z.object({ sha256: ModelRefSchema.shape.sha256, unfinished: z.number().int().min(0) }).optional(),
  /** The assignment that installed the current candidate (its benchmark, resumed after a restart, answers it). */
  candidateAssignmentId: AnsweredId.optional(),
  /**
   * That assignment's issue time: a drop-candidate issued before it is moot (it meant an older
   * candidate; this one a newer decision sent). Absent in state files from before it.
   */
  candidateIssuedAt: AssignmentSchema.shape.issuedAt.optional(),
  /** The sequence numbers of the newest assignment and fleet command taken (older ones are replays, refused). */
  assignmentSeq: z.number().int().optional(),
  commandSeq: z.number().int().optional(),
  /**
   * An assignment received but not finished; resumed after a restart. Taken before it was saved,
   * it is not checked again: one saved by an agent from before assignments were signed has no
   * number or signature, and must not make the whole state unreadable.
   */
  pending: AssignmentSchema.extend({ seq: z.number().int().min(0).default(0), signature: z.string().default('') }).nullable(),
  /**
   * The issue time of the newest rollback (a fleet command) carried out that changed the active
   * model: an activation issued before it is moot (a rollback wins over an activation issued before
   * it), whenever it is taken. Older state files may carry `slotCommands` and
   * `pendingAfterSlotCommands` instead (a count used before): ignored (stripped when read).
   */
  rolledBackAt: FleetCommandSchema.shape.issuedAt.optional(),
  /** The candidate the newest drop-candidate carried out dropped, and that command's issue time: an activation of that model issued before it is moot. */
  droppedCandidate: z.object({ sha256: ModelRefSchema.shape.sha256, issuedAt: FleetCommandSchema.shape.issuedAt }).optional(),
  /**
   * The fleet commands received and not yet answered (nor given up), saved as they are received,
   * before they are queued; resumed after a restart. The broker counts a command delivered once the
   * agent has read it, so one lost by a crash (kill -9, a power cut) would come again only as a new
   * command, by the server's retry. Answering one removes it (every state write of the agent
   * records those it holds in memory, see Agent#write).
   */
  pendingCommands: z.array(FleetCommandSchema).optional(),
  /** The one fleet command an older agent kept (taken, not yet answered): read into `pendingCommands`. */
  pendingCommand: FleetCommandSchema.nullable().optional(),
  handledIds: z.array(z.string()),
  /**
   * The assignment or fleet command whose answer last put each model (by artifact id) into a slot:
   * a model later dropped for missing or damaged files is reported as a refusal of it.
   */
  installedBy: z.record(z.string(), AnsweredId).optional(),
  /**
   * Models dropped from their slots at start because their files were missing, unreadable or
   * damaged. The newest assignment taken, when it names one of them and the broker delivers it
   * again (it is the server's retained one), is taken again and the model downloaded again.
   * Answering an assignment ends this (a newer one has replaced the one that could restore them).
   */
  lost: z.array(LostModelSchema).optional(),
  /**
   * Reports committed together with the state change they describe and not yet moved into the
   * outbox (a transactional outbox: after a crash they are moved on startup).
   */
  unsentReports: z.array(ReportSchema),
  /**
   * The id of the server key (the config's serverPublicKey) of the agent that wrote this state.
   * At start, models that fail to verify under the config's key are a config mistake (another
   * server's config: the start stops) only if the key changed since; under the same key they are
   * damaged files (a signer.json), dropped and restored. Absent in state files from before it.
   */
  serverKeyId: z.string().optional(),
});
export type SlotState = z.infer<typeof SlotStateSchema>;

export const EMPTY_STATE: SlotState = { schema: 1, active: null, candidate: null, previous: null, candidateBenchmarked: true, pending: null, handledIds: [], unsentReports: [] };

export function sameModel(a: ModelRef | null, b: ModelRef | null): boolean {
  return a !== null && b !== null && a.sha256 === b.sha256;
}

/** Whether the candidate slot keeps `candidate` when `active` becomes the active model: another version of the same model only. */
export function candidateStaysBeside(candidate: ModelRef | null, active: ModelRef): boolean {
  return candidate !== null && !sameModel(candidate, active) && candidate.model === active.model;
}

export function withHandled(state: SlotState, id: string): SlotState {
  return {
    ...state,
    handledIds: [...state.handledIds.filter((known) => known !== id), id].slice(-HANDLED_IDS_KEPT),
  };
}

/** Why an activation is moot (see `rolledBackAt`, `droppedCandidate`): a rollback or a drop of its model issued after it was carried out; else undefined. */
export function mootActivationCause(state: SlotState, assignment: Assignment): 'rollback' | 'drop-candidate' | undefined {
  if (assignment.role !== 'active' || sameModel(state.active, assignment)) return undefined;
  const issued = Date.parse(assignment.issuedAt);
  if (state.rolledBackAt !== undefined && issued <= Date.parse(state.rolledBackAt)) return 'rollback';
  const dropped = state.droppedCandidate;
  if (dropped?.sha256 === assignment.sha256 && issued <= Date.parse(dropped.issuedAt)) return 'drop-candidate';
  return undefined;
}

/** Marks an assignment handled; it ends the restore of lost models (see `lost`). */
export function withAssignmentHandled(state: SlotState, id: string): SlotState {
  const { lost: _lost, ...rest } = withHandled(state, id);
  return rest;
}

/**
 * `state` with a refusal that could not be written when it was made (a full disk): the refusal among
 * the unsent reports and its assignment handled, no longer pending, as the refusal's own commit
 * would have left them. Its answer ends the restore of lost models only when it answers the pending
 * assignment: else a newer one (the one the broker holds now) may still restore them.
 */
export function withRefusalRecorded(state: SlotState, report: AssignmentReport): SlotState {
  const pending = state.pending?.id === report.assignmentId;
  return {
    ...(pending ? withAssignmentHandled(state, report.assignmentId) : withHandled(state, report.assignmentId)),
    pending: pending ? null : state.pending,
    unsentReports: [...state.unsentReports.filter((unsent) => unsent.id !== report.id), report],
  };
}

/** Answers that put the model they name into a slot. */
const SLOT_FILLING: ReadonlySet<string> = new Set(['installed', 'activated', 'rolled-back']);

/**
 * `state` with `installedBy` following `report` (an answer that put its model into a slot records
 * who asked for it), kept to the models in the slots.
 */
export function withInstaller(state: SlotState, report: Report): SlotState {
  const installedBy = { ...state.installedBy };
  if (report.kind === 'assignment' && SLOT_FILLING.has(report.outcome)) installedBy[report.sha256] = report.assignmentId;
  const inSlots = new Set(SLOTS.map((slot) => state[slot]?.sha256));
  for (const sha256 of Object.keys(installedBy)) if (!inSlots.has(sha256)) delete installedBy[sha256];
  return { ...state, installedBy };
}

/** The state file exists but does not hold a valid state (a disk fault, or a hand edit). */
export class CorruptStateError extends Error {
  override readonly name = 'CorruptStateError';
}

/** The error reading a directory gives (`EISDIR: illegal operation on a directory, read`), naming it. */
function isADirectory(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error('EISDIR: illegal operation on a directory, read'), { code: 'EISDIR', errno: -os.errno.EISDIR, syscall: 'read', path });
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

  /**
   * Reads the file; a missing file is the empty state, a corrupt one a CorruptStateError naming it.
   * So is one that is not a regular file (a FIFO, a socket, a device: never read, a FIFO would block
   * the start for good) or larger than MAX_STATE_FILE_BYTES: setting it aside lets the device come
   * back on its own. A directory is a system error (EISDIR) as before: the agent stops with one line
   * naming it (a volume mounted in the wrong place, which renaming would not mend). A state of a
   * newer format (a newer agent's, before a downgrade) is a UserError: the start stops, the file kept.
   */
  async load(): Promise<SlotState> {
    let text: string;
    try {
      text = await readRegularFile(this.path, MAX_STATE_FILE_BYTES);
    } catch (error) {
      if (error instanceof NotARegularFileError) {
        if (error.code === 'EISDIR') throw isADirectory(this.path);
        throw new CorruptStateError(error.message);
      }
      const failure = error as NodeJS.ErrnoException;
      if (failure.code === 'ENOENT') return (this.#state = EMPTY_STATE);
      failure.path ??= this.path;
      throw failure;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new CorruptStateError(`${this.path}: not JSON (${errorMessage(error)})`);
    }
    // A state a newer agent wrote (before a downgrade) is not damage: setting it aside would lose
    // its sequence numbers, handled ids and unsent reports. The start stops, naming it.
    const schema = typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as { schema?: unknown }).schema : undefined;
    if (typeof schema === 'number' && Number.isInteger(schema) && schema > STATE_SCHEMA) {
      throw new UserError(
        `${this.path} was written by a newer agent (state format ${schema}; this agent reads ${STATE_SCHEMA}): upgrade the agent, ` +
          'or start it on an empty --data-dir (left as it is)',
      );
    }
    const parsed = SlotStateSchema.safeParse(json);
    if (!parsed.success) throw new CorruptStateError(`${this.path}: not a valid agent state file (${describeZodError(parsed.error)})`);
    // An older agent's single pending command joins the list.
    const { pendingCommand, ...state } = parsed.data;
    const commands = state.pendingCommands ?? [];
    if (pendingCommand && !commands.some((command) => command.id === pendingCommand.id)) state.pendingCommands = [pendingCommand, ...commands];
    return (this.#state = state);
  }

  /**
   * Renames a corrupt file out of the way (kept for inspection) and returns its new path; the state
   * is empty again. The state is empty also when the rename fails (thrown: a read-only disk): the
   * next save renames the file first, so that it is still kept rather than replaced.
   */
  async setAside(now: Date): Promise<string> {
    const aside = `${this.path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
    this.#state = EMPTY_STATE;
    this.#asideDue = aside;
    await rename(this.path, aside);
    this.#asideDue = undefined;
    return aside;
  }

  /** Where a corrupt file that could not be set aside goes before the next save. */
  #asideDue: string | undefined;

  async save(next: SlotState): Promise<void> {
    if (this.#asideDue !== undefined) {
      await rename(this.path, this.#asideDue).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
      this.#asideDue = undefined;
    }
    await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`);
    this.#state = next;
  }

  /**
   * Runs on `next` without writing it: the disk takes no writes now (full, read-only). The file
   * keeps the state it had, which a restart comes back on; the next save writes the state of then.
   */
  keepInMemory(next: SlotState): void {
    this.#state = next;
  }
}
