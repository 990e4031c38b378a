import { TERMINAL_PHASES, type DecisionLogEntry, type RolloutAction, type RolloutPhase, type RolloutState } from './rollout-state.ts';

/**
 * Persistence of rollouts: state, the actions not yet executed, the ids of executed actions,
 * and the decision log. The server's store implements it on SQLite/PostgreSQL (one
 * transaction per commit); InMemoryRolloutRepository is for tests.
 *
 * The controller follows an outbox discipline: a transition's state and its new actions are
 * committed together before any action runs, and an action's result is committed together
 * with marking it executed. A crash anywhere leaves either the action pending (it runs again,
 * with the same id, which the fleet treats as a no-op) or done and recorded, never half.
 */
export interface RolloutRecord {
  readonly state: RolloutState;
  readonly pendingActions: readonly RolloutAction[];
  /** Increments on every commit; commits name the revision they started from. */
  readonly revision: number;
}

export interface RolloutCommit {
  readonly expectedRevision: number;
  readonly state: RolloutState;
  readonly pendingActions: readonly RolloutAction[];
  /** Actions whose results this commit applies. */
  readonly executedActionIds: readonly string[];
  readonly decisions: readonly DecisionLogEntry[];
}

export class RevisionConflictError extends Error {
  constructor(id: string, expected: number, actual: number) {
    super(`rollout ${id}: revision ${actual} in the store, expected ${expected} (another process is driving it?)`);
    this.name = 'RevisionConflictError';
  }
}

/** Thrown by `create` when the store finds the rollout's candidate version retired (by a retirement that raced the start). */
export class CandidateRetiredError extends Error {
  constructor(model: string, version: string) {
    super(`candidateVersion: ${model}@${version} is retired`);
    this.name = 'CandidateRetiredError';
  }
}

/**
 * Thrown by `create` when the store finds the model's production alias other than the version
 * the start read as its previous production (an operator moved it meanwhile).
 */
export class ProductionMovedError extends Error {
  constructor(model: string, candidateVersion: string, read: string | null, now: string | null) {
    super(
      now === candidateVersion
        ? `${model} ${candidateVersion} is already production`
        : `the production alias of ${model} moved (to ${now ?? 'none'}, from ${read ?? 'none'}) while the rollout was starting; start it again`,
    );
    this.name = 'ProductionMovedError';
  }
}

/**
 * Why a new rollout of a model may not start while another rollout of it is as given (see
 * rolloutInTheWay). Thrown by `create` when the store finds one with the model locked (a start on
 * another server, or a deposed leader's, that raced this one past RolloutService.start's check).
 */
export class RolloutInTheWayError extends Error {
  /** running: not finished; delivering: finished, still sending devices their models; recording: finished, still recording version statuses. */
  readonly reason: 'running' | 'delivering' | 'recording';
  constructor(reason: RolloutInTheWayError['reason'], message: string) {
    super(message);
    this.name = 'RolloutInTheWayError';
    this.reason = reason;
  }
}

/**
 * Why a new rollout of `other`'s model may not start now because of `other`, else null. It is
 * under way (not Completed, Failed, Aborted or RolledBack); or finished but still sending its
 * devices their models (a revert retried while the store or broker fails: it has not recorded
 * them yet, so the new rollout would read the version being reverted as their baseline, and a
 * failure of it would bring that version back); or still recording its version statuses (a
 * rollback's restore of the previous production: the new rollout would record the wrong version
 * as its previous production). RolloutService.start checks it (waiting a little for statuses),
 * and StoreRolloutRepository.create again with the model locked.
 */
export function rolloutInTheWay(other: { readonly id: string; readonly model: string; readonly phase: RolloutPhase; readonly pendingActions: readonly RolloutAction[] }): RolloutInTheWayError | null {
  const { id, model, phase } = other;
  if (!TERMINAL_PHASES.includes(phase)) return new RolloutInTheWayError('running', `model ${model} already has rollout ${id} (${phase}); finish, abort or roll it back first`);
  const delivering = other.pendingActions.filter((action) => action.kind === 'assign' || action.kind === 'revert').length;
  if (delivering > 0) {
    return new RolloutInTheWayError('delivering', `model ${model}'s rollout ${id} (${phase}) is still sending its devices their models (${delivering} pending); start again once that is done`);
  }
  if (other.pendingActions.some((action) => action.kind === 'markVersion')) {
    return new RolloutInTheWayError('recording', `model ${model}'s rollout ${id} (${phase}) is still recording its version statuses (the production alias); start again once that is done`);
  }
  return null;
}

export interface RolloutCountFilter {
  readonly unfinished?: boolean;
  readonly model?: string;
  /** Only rollouts started after this one (none when it does not exist): counted, its place in the newest-first list. */
  readonly newerThan?: string;
}

export interface RolloutListFilter extends RolloutCountFilter {
  readonly offset?: number;
  readonly limit?: number;
  /** Only finished ones (the opposite of `unfinished`), the last changed first instead of the newest. */
  readonly finishedByLastChange?: boolean;
}

export interface RolloutRepository {
  /**
   * Stores a new rollout at revision 1; throws if the id exists. A store that keeps the registry
   * too throws CandidateRetiredError when the candidate version is retired, and ProductionMovedError
   * when the production alias is no longer the rollout's previous production, both checked with
   * the model locked, as a retirement or a move of the alias checks for rollouts of it: one of the
   * two waits for the other. Such a store also throws RolloutInTheWayError when another rollout of
   * the model is in the way (rolloutInTheWay), for a start that raced one on another server.
   */
  create(record: { state: RolloutState; pendingActions: readonly RolloutAction[]; decisions: readonly DecisionLogEntry[] }): Promise<void>;
  load(id: string): Promise<RolloutRecord | undefined>;
  /** The stored revision alone (no state read): whether a cached view of the rollout is current. */
  revisionOf(id: string): Promise<number | undefined>;
  /**
   * Ids of rollouts, newest first; `unfinished` keeps those with pending actions or a non-terminal phase;
   * `finishedByLastChange` keeps the others, the last changed first.
   * `offset` skips that many of the newest, `limit` keeps at most that many (both done by the store).
   */
  list(filter?: RolloutListFilter): Promise<readonly string[]>;
  /** How many rollouts `list` finds with the filter, without offset or limit. */
  count(filter?: RolloutCountFilter): Promise<number>;
  /**
   * Atomic; throws RevisionConflictError when the stored revision differs. Returns the new revision.
   * A store that keeps the registry too throws RolloutCommandError, with the model locked, for a
   * commit recording a rollback of a finished rollout once a newer rollout of the model has
   * promoted or is under way (what RolloutService checks first).
   */
  commit(id: string, commit: RolloutCommit): Promise<number>;
  isExecuted(id: string, actionId: string): Promise<boolean>;
  decisions(id: string, options?: { afterId?: string; limit?: number }): Promise<readonly DecisionLogEntry[]>;
}
