/**
 * What the rollout controller needs from the device fleet. The lead wires it to the store's
 * device table and the MQTT fleet publisher (retained assignments, fleet `rollback` commands).
 *
 * Commands carry `commandId`, the rollout action's id, which is a valid protocol message id:
 * the fleet uses it as the assignment id, so executing the same action twice (after a crash
 * between doing and recording it) changes nothing on a device.
 */
export interface TargetDevice {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The version of the model active on the device now; null when it has none. */
  readonly baseline: string | null;
}

export type DeliveryOutcome = 'delivered' | 'offline' | 'refused' | 'gone' | 'superseded';

/**
 * A device's answer to a rollout's command that no waiting command took (RolloutController.
 * deviceAnswered): it had stopped waiting (a frozen device, an answer just after the timeout).
 */
export interface LateDeviceAnswer {
  readonly outcome: 'delivered' | 'refused';
  readonly reason?: string;
  /**
   * For an answer that does not settle a revert by itself — a drop-candidate answered "no candidate
   * to drop": the device's candidate slot was empty, but its active model may be the candidate, which
   * an activation racing the rollback put there — the version the device runs: it is back only if
   * that is its baseline; otherwise the answer to the baseline the revert retained for it decides.
   */
  readonly runs?: { readonly model: string; readonly version: string };
}

export interface DeliveryResult {
  readonly deviceId: string;
  /**
   * delivered: the device acknowledged; offline: not within the fleet's delivery timeout; refused:
   * it said no; gone: it left the fleet (revoked, or not enrolled), so it leaves the rollout too;
   * superseded: nothing was sent, the device having been sent something newer since (an
   * assignment, another rollout), which the command does not undo.
   */
  readonly outcome: DeliveryOutcome;
  readonly reason?: string;
}

/**
 * Runs a command's recording step for the devices it still speaks for, decided under the
 * rollout's lock: a command whose devices were sent something newer meanwhile (a rollback while
 * it waited) records nothing for them. The fleet calls it once, around recording only (not
 * around broker sends or waiting for answers).
 *
 * The lock is this process's; another controller (another server after a failover, or this one
 * after a re-election) does not take it. So the guard also hands the recording step a fence: the
 * rollout's revision it decided at. The fleet checks it in the transaction that records (see
 * RecordFence), so that a deposed leader's write cannot land after the new leader moved on.
 */
export type RecordGuard = (record: (deviceIds: readonly string[], fence?: RecordFence) => Promise<void>) => Promise<void>;

/**
 * The rollout's stored revision a guarded recording was decided at. The transaction that records
 * holds the rollout's row at that revision (locking it until it commits) or records nothing and
 * fails with StaleRecordError: a commit of the rollout since (by whichever controller) may have
 * given the devices something newer.
 */
export interface RecordFence {
  readonly rolloutId: string;
  readonly revision: number;
}

/** A fenced recording found the rollout moved on since its guard decided (RecordFence): nothing was recorded. */
export class StaleRecordError extends Error {
  constructor(fence: RecordFence, current: string) {
    super(`rollout ${fence.rolloutId} moved on since revision ${fence.revision} (${current}): this stale recording records nothing`);
    this.name = 'StaleRecordError';
  }
}

/**
 * Told of each device's answer as it comes (delivered, refused or gone; never offline, which is
 * only known when the wait is over), before the command returns: one frozen device must not hide
 * that the others have already done it. The command's result still lists every device.
 */
export type AnswerListener = (result: DeliveryResult) => void;

export interface AssignCommand {
  readonly commandId: string;
  readonly model: string;
  readonly version: string;
  /** candidate: install next to the active model and benchmark both; active: serve it. */
  readonly role: 'candidate' | 'active';
  readonly deviceIds: readonly string[];
  /** Absent: every device in deviceIds is recorded. */
  readonly guard?: RecordGuard;
  readonly onAnswer?: AnswerListener;
}

export interface RevertCommand {
  readonly commandId: string;
  readonly model: string;
  /** Each device's baseline, which it still holds on disk (null: drop the candidate only). */
  readonly devices: readonly { readonly deviceId: string; readonly version: string | null }[];
  /** Absent: every device in devices is recorded. */
  readonly guard?: RecordGuard;
  readonly onAnswer?: AnswerListener;
}

/** A device's retained assignment, as far as a rollout needs to know it. */
export interface RetainedAssignment {
  readonly id: string;
  readonly issuedAt: string;
  readonly model: string;
  readonly version: string;
  /**
   * The device took a newer assignment than this one, which the store does not hold (it was
   * restored from an older backup): what it runs was given by no rollout or operator this store
   * knows, and no rollout's revert sends it elsewhere.
   */
  readonly outdated?: boolean;
}

export interface FleetPort {
  /** Every device that runs (or may run) the model, with its labels and active version. */
  listDevices(model: string): Promise<readonly TargetDevice[]>;
  /** One result per device; never throws for an offline device (that is a result). */
  assign(command: AssignCommand): Promise<readonly DeliveryResult[]>;
  revert(command: RevertCommand): Promise<readonly DeliveryResult[]>;
  /**
   * Each device's retained assignment (absent: none), by id and issue time: a rollout leaves a
   * device alone once someone else (an operator, a newer rollout) has assigned it something
   * since the rollout started. Optional: without it, that check is skipped.
   */
  retainedAssignments?(deviceIds: readonly string[]): Promise<ReadonlyMap<string, RetainedAssignment>>;
  /**
   * Why every device would refuse `model@version` (no key the server trusts vouches for its
   * signature), or null: a rollout of it is refused at its start. Optional: without it, the assign
   * answers tell.
   */
  unsendable?(model: string, version: string): Promise<string | null>;
}

/**
 * The registry side: which version is production, and version status changes. `superseded` and
 * `withdrawn` are the registry's own: the version that was production when another one became
 * it, or when an operator cleared the production alias.
 */
export type VersionStatus = 'production' | 'failed' | 'rolled-back' | 'superseded' | 'withdrawn';

export interface ModelStatusPort {
  productionVersion(model: string): Promise<string | null>;
  /** Idempotent by commandId. */
  setVersionStatus(change: { commandId: string; model: string; version: string; status: VersionStatus; reason: string }): Promise<void>;
}
