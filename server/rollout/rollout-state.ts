import type { Measurement } from '../analysis/measurement.ts';
import type { RunPhase } from '../analysis/analysis-assessment.ts';
import type { Role } from '../../shared/protocol/payloads.ts';
import type { RolloutSpec } from './rollout-spec.ts';

/**
 * The persisted state of one rollout, the events that move it, and the idempotent actions it
 * asks for. Everything is plain JSON (times are epoch milliseconds) so repositories store it
 * as is.
 */
export type RolloutPhase = 'Progressing' | 'Paused' | 'Completed' | 'Failed' | 'Aborted' | 'RolledBack';
export const TERMINAL_PHASES: readonly RolloutPhase[] = ['Completed', 'Failed', 'Aborted', 'RolledBack'];

/** What the rollout wants a device to run. */
export type DesiredModel = 'baseline' | 'candidate' | 'active';
/** Where delivery of the desired model stands. */
export type Delivery = 'idle' | 'pending' | 'delivered' | 'retrying' | 'unreachable' | 'refused';

export interface DeviceState {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The version active on the device when the rollout started; null if it had none. For a device
   * `outside` the rollout, the production version its rollback restores.
   */
  readonly baseline: string | null;
  readonly desired: DesiredModel;
  readonly delivery: Delivery;
  /** Delivery attempts of the current desired model. */
  readonly attempts: number;
  readonly nextAttemptAt?: number;
  /** The rollout ever sent this device something (so a rollback must revert it). */
  readonly touched: boolean;
  /** The action that carries the current desired model; results of older actions are ignored. */
  readonly actionId?: string;
  readonly reason?: string;
  /** It left the fleet (revoked, or not enrolled) during the rollout: nothing is sent to it again. */
  readonly left?: true;
  /**
   * What the rollout sent it last was not sent: it had been sent something newer since (an
   * operator's assignment after the rollout, another rollout), which the rollout does not undo. Not
   * counted as a device to send its baseline again (devicesNotBack): only an assignment by hand moves it.
   */
  readonly reassigned?: true;
  /**
   * Added by the rollback of the promoted rollout: not one of its targets, it ran the candidate all
   * the same (given it by `assign`, typically through the production alias, after the promotion).
   */
  readonly outside?: true;
}

/** `unreachable`: no device of the step's cohort could be sent the candidate (it goes on when one has it). */
export type PauseReason = 'step' | 'manual' | 'inconclusive' | 'unreachable';

export interface PauseState {
  readonly reason: PauseReason;
  readonly since: number;
  /** A timed step pause resumes by itself then. */
  readonly until?: number;
  readonly message: string;
}

export interface AnalysisState {
  readonly runId: string;
  readonly stepIndex: number;
  readonly startedAt: number;
  readonly phase: RunPhase;
  readonly measurements: readonly Measurement[];
  readonly message?: string;
}

/** What the step at stepIndex is doing. */
export type StepStage = 'assigning' | 'pausing' | 'analyzing' | 'activating' | 'done';

export interface RolloutOutcome {
  readonly status: 'production' | 'failed' | 'aborted' | 'rolled-back';
  readonly reason: string;
  readonly at: number;
}

export interface RolloutState {
  readonly id: string;
  readonly spec: RolloutSpec;
  readonly phase: RolloutPhase;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** The current step; spec.steps.length while activating the candidate everywhere. */
  readonly stepIndex: number;
  readonly stepStage: StepStage;
  readonly stepStartedAt: number;
  readonly pause?: PauseState;
  readonly analysis?: AnalysisState;
  /** Analysis runs started so far (run ids stay unique across retries). */
  readonly analysisRuns: number;
  /** Every target device, in cohort order; then any device a rollback took back from `outside` the targets. */
  readonly devices: readonly DeviceState[];
  /** Devices that carry (or are being given) the candidate, in the order they joined. */
  readonly cohort: readonly string[];
  readonly previousProduction: string | null;
  /**
   * The last time a rollback sent its devices back: the rollback of the promoted or running rollout,
   * and each rollback again of the rolled-back one (not a rollback of one already failed or
   * aborted, which only re-sends what its failure decided). Absent in states stored before it.
   */
  readonly rolledBackAt?: number;
  /** When it promoted the candidate to every device (it became Completed); kept when a rollback follows. Absent in states stored before it. */
  readonly promotedAt?: number;
  /** Counter behind action and decision ids. */
  readonly seq: number;
  readonly outcome?: RolloutOutcome;
}

export type ActionDeviceOutcome = 'delivered' | 'offline' | 'refused' | 'gone' | 'superseded';

/**
 * Why a rollout that waits for a device sends it its assignment again: it came back online, or it
 * answered something (its models changed), so it takes what it is sent now (a candidate held back
 * until the device took a rollback's activation it had missed goes out then); or it was revoked,
 * and its delivery finds it gone (the rollout goes on without it).
 */
export type DeviceReturn = 'online' | 'answered' | 'revoked';

/** A device's answer to `actionId` that no waiting action took. */
export interface LateAnswer {
  readonly deviceId: string;
  readonly actionId: string;
  readonly outcome: 'delivered' | 'refused';
  readonly reason?: string;
  /** See LateDeviceAnswer.runs: a revert's device counts as back only when this is its baseline. */
  readonly runs?: { readonly model: string; readonly version: string };
}

export type RolloutEvent =
  | {
      readonly type: 'start';
      readonly at: number;
      readonly by: string;
      readonly devices: readonly { id: string; labels: Record<string, string>; baseline: string | null }[];
      readonly previousProduction: string | null;
      /** Warnings about the spec (analysis that cannot decide anything, see spec-warnings.ts): logged as `warning` decisions with the start. */
      readonly warnings?: readonly string[];
    }
  | { readonly type: 'actionResult'; readonly at: number; readonly actionId: string; readonly devices?: readonly { deviceId: string; outcome: ActionDeviceOutcome; reason?: string }[] }
  /** Answers to a device action that is still running (the others are still awaited); its result comes later. */
  | { readonly type: 'actionProgress'; readonly at: number; readonly actionId: string; readonly devices: readonly { deviceId: string; outcome: Exclude<ActionDeviceOutcome, 'offline'>; reason?: string }[] }
  | { readonly type: 'analysisMeasured'; readonly at: number; readonly runId: string; readonly measurement: Measurement }
  | { readonly type: 'analysisCompleted'; readonly at: number; readonly runId: string; readonly phase: Exclude<RunPhase, 'Running'>; readonly message: string }
  | { readonly type: 'tick'; readonly at: number }
  | { readonly type: 'deviceOnline'; readonly at: number; readonly deviceId: string; readonly cause?: DeviceReturn }
  /**
   * Devices answered actions that had stopped waiting for them (a frozen device, a link stalled
   * without the broker noticing, an answer just after the timeout): they may have done what the
   * rollout last sent them.
   */
  | { readonly type: 'lateAnswer'; readonly at: number; readonly devices: readonly LateAnswer[] }
  /**
   * A device that installed the candidate (under assignment `actionId`) could not benchmark it;
   * `failedRole` `active`: because its own model failed (absent: the candidate did).
   */
  | { readonly type: 'benchmarkFailed'; readonly at: number; readonly deviceId: string; readonly actionId: string; readonly reason: string; readonly failedRole?: Role }
  | { readonly type: 'pause'; readonly at: number; readonly by: string }
  /**
   * pausedSince: when the pause the operator resumes began (its `pause.since`, as they saw it).
   * When given, a rollout no longer in that pause (another resume ended it, or held it and let
   * the step's own pause take over) refuses the command: two operators resuming at once have one
   * resume's effect, not two (a timed pause skipped as well as the hold on it).
   */
  | { readonly type: 'resume'; readonly at: number; readonly by: string; readonly pausedSince?: number }
  /**
   * fromStep: the step (index) the operator promotes from. When given, a rollout no longer at that
   * step (another promotion, or the step itself, moved it on) refuses the command instead of
   * promoting again: two operators promoting by one step at once skip one step, not two.
   */
  | { readonly type: 'promote'; readonly at: number; readonly by: string; readonly full: boolean; readonly fromStep?: number }
  | { readonly type: 'abort'; readonly at: number; readonly by: string; readonly reason?: string }
  | {
      readonly type: 'rollback';
      readonly at: number;
      readonly by: string;
      readonly reason?: string;
      /**
       * For the rollback of a promoted rollout: the fleet's devices that run the candidate now
       * (FleetPort.listDevices, baseline = the candidate). Those outside the rollout go back to the
       * restored production version too: the candidate was production, and reached devices the
       * rollout never targeted.
       */
      readonly runningCandidate?: readonly { id: string; labels: Record<string, string> }[];
      /** Instead: why the fleet could not be listed (those devices stay as they are, and the decision says so). */
      readonly fleetUnlisted?: string;
      /**
       * The rollout's actions whose last attempt failed (the store or the fleet was down) and that
       * wait for a retry (the controller's backoff). A rollback again of a rolled-back rollout sends
       * their devices their baseline again now; devices whose revert is on its way are left alone.
       */
      readonly stalledActions?: readonly string[];
    };

export type ManualCommand = Extract<RolloutEvent['type'], 'pause' | 'resume' | 'promote' | 'abort' | 'rollback'>;

export interface DeviceAssignment {
  readonly deviceId: string;
  /** For `revert`, the device's baseline (null: remove the model's candidate, nothing to go back to). */
  readonly version: string | null;
}

/** Commands for the executor. Ids are unique per rollout and valid protocol message ids. */
export type RolloutAction =
  | { readonly id: string; readonly kind: 'assign'; readonly role: 'candidate' | 'active'; readonly model: string; readonly version: string; readonly devices: readonly string[] }
  | { readonly id: string; readonly kind: 'revert'; readonly model: string; readonly devices: readonly DeviceAssignment[] }
  | { readonly id: string; readonly kind: 'startAnalysis'; readonly runId: string; readonly stepIndex: number }
  | { readonly id: string; readonly kind: 'stopAnalysis'; readonly runId: string }
  | { readonly id: string; readonly kind: 'markVersion'; readonly model: string; readonly version: string; readonly status: 'production' | 'failed' | 'rolled-back'; readonly reason: string };

/** `warning`: a warning about the spec given when the rollout started (verdict `warning`), logged right after `start`. */
export type DecisionKind = 'start' | 'warning' | 'step' | 'assignment' | 'measurement' | 'analysis' | 'pause' | 'promotion' | 'failure' | 'command' | 'rollback' | 'device' | 'takeover';

/** The decision log: every decision with its inputs. */
export interface DecisionLogEntry {
  readonly id: string;
  readonly rolloutId: string;
  readonly at: number;
  readonly kind: DecisionKind;
  readonly stepIndex: number;
  /** e.g. a measurement phase, `promoted`, `failed`, `paused`. */
  readonly verdict: string;
  readonly message: string;
  readonly measurement?: Measurement;
  readonly by?: string;
}

export interface Transition {
  readonly state: RolloutState;
  readonly actions: readonly RolloutAction[];
  readonly decisions: readonly DecisionLogEntry[];
}
