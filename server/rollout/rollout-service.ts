import { setTimeout as sleep } from 'node:timers/promises';
import { setBounded } from '../../shared/util/bounded-map.ts';
import { Mutex } from '../../shared/util/mutex.ts';
import { queryTaskProblem, relativeTaskProblem } from '../analysis/relative-check.ts';
import { ServiceError } from '../app/service-error.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { Store } from '../store/store.ts';
import { describeLeader, type Leadership } from './leader-election.ts';
import { RegistryModelStatus } from './registry-model-status.ts';
import { smallCohortWarnings } from './small-cohort-warnings.ts';
import { RolloutControllerStoppedError, type RolloutController } from './rollout-controller.ts';
import type { RolloutFeed, RolloutFeedEvent } from './rollout-feed.ts';
import { CandidateRetiredError, ProductionMovedError, RolloutInTheWayError, rolloutInTheWay, type RolloutRecord, type RolloutRepository } from './rollout-repository.ts';
import type { RolloutSpec } from './rollout-spec.ts';
import { specWarnings } from './spec-warnings.ts';
import { restoredVersionWarnings, type VersionRetiredOf, type VersionStatusOf } from './restored-version-warnings.ts';
import { fleetWaitingNote } from './fleet-readiness.ts';
import { isTerminal, RolloutCommandError } from './rollout-state-machine.ts';
import { rolloutSummary, type RolloutSummary } from './rollout-views.ts';
import type { DecisionLogEntry, RolloutState } from './rollout-state.ts';
import { RESERVED_VERSION_NAMES } from '../registry/names.ts';

export type RolloutCommand = 'pause' | 'resume' | 'promote' | 'abort' | 'rollback';

/**
 * full: promote straight to 100% (else one step); fromStep: the step a promotion is from;
 * pausedSince: when the pause a resume is for began (ms); reason: an abort's or rollback's.
 * fromStep and pausedSince make a command that meets a rollout moved on since a conflict.
 */
export interface RolloutCommandOptions {
  full?: boolean;
  reason?: string;
  fromStep?: number;
  pausedSince?: number;
}

/** A started rollout, with the warnings its start gave (also in its decision log). */
export type StartedRollout = RolloutRecord & { readonly warnings: readonly string[] };

/** A rollout after a command, with the warnings the command gave (a rollback's, also in its decision log). */
export type CommandedRollout = RolloutRecord & { readonly warnings: readonly string[] };

export interface RolloutServiceOptions {
  readonly store: Store;
  readonly repository: RolloutRepository;
  readonly feed: RolloutFeed;
  readonly leadership: Leadership;
  /** The controller while this process leads; undefined on a follower. */
  readonly controller: () => RolloutController | undefined;
  /** Shared with direct assignments (ServerContext.fleetChanges); a fresh one when not given. */
  readonly fleetChanges?: Mutex;
  /**
   * Whether the leader's device commands wait for its broker connection (an external broker not
   * connected yet): a command is still decided and recorded, and its decision log says so.
   */
  readonly fleetWaiting?: () => boolean;
  /** Why devices would refuse the version (no key the server trusts vouches for its signature), or null (FleetPort.unsendable). */
  readonly unsendable?: (model: string, version: string) => Promise<string | null>;
  /** The spec's analysis queries checked with the providers they run on (preflightQueries): problems refuse the start, warnings are kept with it. */
  readonly preflight?: (spec: RolloutSpec) => Promise<{ problems: readonly string[]; warnings: readonly string[] }>;
}

/** How long a start waits for the model's previous rollout to record its version statuses before refusing. */
const STATUS_WAIT_MS = 3000;

/** Summaries kept (a list shows at most 1,000 rollouts). */
const SUMMARY_CACHE_ROLLOUTS = 1000;

/**
 * What REST and gRPC do with rollouts: start one (after checking the registry), read them from
 * the store (any server), send operator commands (the leader only), watch changes. Commands
 * and starts are audited.
 */
export class RolloutService {
  readonly #o: RolloutServiceOptions;
  /**
   * Starts and rollbacks take turns (both run on the leader), with direct assignments: a start's
   * check that no other rollout of the model is under way, and a rollback's check that no newer one
   * is, each hold until it is done. Else a rollback of a promoted rollout and a start of a newer one
   * could both pass their checks, and the rollback undo what the new rollout took as its baseline
   * (as a direct assignment could, made while the start read the baselines).
   */
  readonly #startsAndRollbacks: Mutex;
  readonly #summaries = new Map<string, RolloutSummary>();

  constructor(options: RolloutServiceOptions) {
    this.#o = options;
    this.#startsAndRollbacks = options.fleetChanges ?? new Mutex();
  }

  /**
   * Starts a rollout of the spec. Its warnings (spec-warnings.ts, a candidate that already failed
   * or was rolled back, and a baseline its rollback would restore that did) never block it; they
   * are stored in its decision log and returned.
   */
  async start(spec: RolloutSpec, principal: Principal): Promise<StartedRollout> {
    const controller = await this.#leader();
    // Before the lock: it may wait seconds for a metric provider that does not answer.
    const preflight = (await this.#o.preflight?.(spec)) ?? { problems: [], warnings: [] };
    if (preflight.problems.length > 0) throw new ServiceError('bad_request', preflight.problems.join('; '));
    return this.#startsAndRollbacks.run(async () => {
      const { model, candidateVersion } = spec;
      const version = await this.#o.store.models.getVersion(model, candidateVersion);
      if (!version) {
        // An alias or `latest` is a version in the CLI's NAME@REF, not here: the rollout pins the version itself.
        if (RESERVED_VERSION_NAMES.has(candidateVersion)) {
          const pointsAt = candidateVersion === 'latest' ? undefined : (await this.#o.store.models.getAlias(model, candidateVersion))?.version;
          throw new ServiceError('bad_request', `candidateVersion: "${candidateVersion}" is ${candidateVersion === 'latest' ? 'a reference' : 'an alias'}, not a version: give the version itself${pointsAt ? ` (${model}@${candidateVersion} is ${pointsAt})` : ''}`);
        }
        throw new ServiceError('bad_request', `candidateVersion: no version ${model}@${candidateVersion} in the registry (push it first)`);
      }
      if (version.retired) throw new ServiceError('conflict', `candidateVersion: ${model}@${candidateVersion} is retired`);
      // Every device would refuse it: the rollout would fail at its first step, blaming the devices.
      const unsendable = await this.#o.unsendable?.(model, candidateVersion);
      if (unsendable) throw new ServiceError('conflict', `candidateVersion: ${unsendable}`);
      const taskWarnings: string[] = [];
      spec.steps.forEach((step, index) => {
        if (step.kind !== 'analysis') return;
        for (const metric of step.metrics) {
          const problem = metric.source.kind === 'relative' ? relativeTaskProblem(metric.source.metric, version.manifest.task) : null;
          if (problem) throw new ServiceError('bad_request', `steps[${index}].analysis metric "${metric.name}": ${model}@${candidateVersion}: ${problem}`);
          const unread = metric.source.kind === 'query' ? [metric.source.query, metric.source.baselineQuery ?? '', metric.source.samplesQuery ?? ''].map((query) => queryTaskProblem(query, version.manifest.task)).find((found) => found !== null) : null;
          if (unread) taskWarnings.push(`steps[${index}].analysis metric "${metric.name}": ${model}@${candidateVersion}: ${unread}`);
        }
      });
      for (const id of await this.#o.repository.list({ model, unfinished: true })) {
        // Another rollout of the model under way, or finished but still sending its devices their
        // models or recording its version statuses (rolloutInTheWay); the store checks the same
        // again with the model locked (another server's start). Version statuses land within
        // moments, so the start waits a little for them first.
        const other = await this.#o.repository.load(id);
        const inTheWay = other && rolloutInTheWay({ id, model, phase: other.state.phase, pendingActions: other.pendingActions });
        if (inTheWay && (inTheWay.reason !== 'recording' || (await this.#stillRecordingStatuses(id)))) throw new ServiceError('conflict', inTheWay.message, { cause: inTheWay });
      }
      const warnings = [...specWarnings(spec), ...taskWarnings, ...preflight.warnings, ...(await this.#candidateStatusWarnings(model, candidateVersion))];
      let id: string;
      const by = actorOf(principal);
      try {
        // The warnings the start returns are kept in the rollout's decision log, written with it.
        const stateWarnings = async (state: RolloutState) => {
          const found = [...smallCohortWarnings(state), ...(await restoredVersionWarnings(state, this.#statusOf(model), this.#retiredOf(model), 'start'))];
          warnings.push(...found);
          return found;
        };
        id = (await controller.start(spec, { by, warnings: [...warnings], stateWarnings })).id;
      } catch (error) {
        if (error instanceof RolloutCommandError || error instanceof CandidateRetiredError || error instanceof ProductionMovedError || error instanceof RolloutInTheWayError) {
          throw new ServiceError('conflict', error.message, { cause: error });
        }
        if (error instanceof RolloutControllerStoppedError) {
          // Deposed while its insert committed: stored all the same (the leader picks it up), and
          // audited as started; a retry would be refused, so the 503 does not ask for one.
          if (error.stored !== undefined) {
            await this.#audit(principal, 'rollout.start', error.stored, { model, candidateVersion, steps: spec.steps.length }).catch(() => {});
            throw new ServiceError('unavailable', error.message, { cause: error });
          }
          // Deposed while starting (its lock session dropped): the controller stored nothing.
          throw new ServiceError('retry_later', `${error.message}; retry shortly`, { cause: error });
        }
        throw error;
      }
      await this.#audit(principal, 'rollout.start', id, { model, candidateVersion, steps: spec.steps.length });
      const started = (await this.#o.repository.load(id))!;
      // Started while the devices cannot be reached yet: the log says when they will be (as for a command).
      if (this.#o.fleetWaiting?.() && started.pendingActions.some((action) => action.kind === 'assign' || action.kind === 'revert')) {
        const noted = await controller.note(id, { kind: 'command', verdict: 'waiting-for-broker', message: fleetWaitingNote('start'), by }).then(
          () => true,
          () => false, // the start stands; only the note is missing
        );
        if (noted) return { ...(await this.#o.repository.load(id))!, warnings };
      }
      return { ...started, warnings };
    });
  }

  /** A warning when the candidate's newest status says a rollout already failed it or rolled it back. */
  async #candidateStatusWarnings(model: string, version: string): Promise<string[]> {
    const status = await this.#statusOf(model)(version);
    if (status?.status !== 'failed' && status?.status !== 'rolled-back') return [];
    return [`candidateVersion: ${model}@${version} is ${status.status} since ${status.at} (${status.reason}); this rollout ships it again`];
  }

  /** The registry's newest status of each version of the model (the one a rollout or an alias move gave it). */
  #statusOf(model: string): VersionStatusOf {
    const statuses = new RegistryModelStatus(this.#o.store);
    return (version) => statuses.versionStatus(model, version);
  }

  /** Whether the registry has a version of the model retired. */
  #retiredOf(model: string): VersionRetiredOf {
    return async (version) => (await this.#o.store.models.getVersion(model, version))?.retired === true;
  }

  /** Whether the rollout still has version statuses to record after waiting up to STATUS_WAIT_MS for them. */
  async #stillRecordingStatuses(id: string): Promise<boolean> {
    const deadline = Date.now() + STATUS_WAIT_MS;
    for (;;) {
      const record = await this.#o.repository.load(id);
      if (!record?.pendingActions.some((action) => action.kind === 'markVersion')) return false;
      if (Date.now() >= deadline) return true;
      await sleep(100);
    }
  }

  /**
   * Summaries of the newest rollouts. Each is computed from the stored state once per revision:
   * a finished rollout over 20,000 devices is a 4 MB state, and the dashboard lists every few seconds.
   */
  async list(filter: { model?: string; limit?: number; offset?: number } = {}): Promise<RolloutSummary[]> {
    // The store skips the `offset` newest and reads only the page's ids.
    const ids = await this.#o.repository.list({ ...(filter.model === undefined ? {} : { model: filter.model }), offset: filter.offset ?? 0, limit: filter.limit ?? 100 });
    const summaries = await Promise.all(ids.map((id) => this.#summary(id)));
    return summaries.filter((summary): summary is RolloutSummary => summary !== undefined);
  }

  /** How many rollouts there are (of the model, when given): what `list` pages through. */
  count(filter: { model?: string } = {}): Promise<number> {
    return this.#o.repository.count(filter.model === undefined ? {} : { model: filter.model });
  }

  /**
   * Where rollout `id` is in the newest-first list (of the model, when given), counted from 0: how
   * many started after it. A ServiceError (not found) when there is no such rollout (of that model).
   */
  async placeOf(id: string, filter: { model?: string } = {}): Promise<number> {
    const summary = await this.#summary(id);
    if (!summary) throw new ServiceError('not_found', `no rollout ${id}`);
    if (filter.model !== undefined && summary.model !== filter.model) throw new ServiceError('not_found', `rollout ${id} is of model ${summary.model}, not ${filter.model}`);
    return this.#o.repository.count({ ...filter, newerThan: id });
  }

  async #summary(id: string): Promise<RolloutSummary | undefined> {
    const revision = await this.#o.repository.revisionOf(id);
    if (revision === undefined) return undefined;
    const cached = this.#summaries.get(id);
    if (cached?.revision === revision) return cached;
    const record = await this.#o.repository.load(id);
    if (!record) return undefined;
    const summary = rolloutSummary(record);
    setBounded(this.#summaries, id, summary, SUMMARY_CACHE_ROLLOUTS);
    return summary;
  }

  /**
   * The rollout, its decision log, why a rollback of it would be refused now (null: it would not,
   * see #undoneByRollback), and what a rollback now would warn of (the registry as it is now: a
   * version retired, failed or rolled back since the start; the dashboard's confirmation says it).
   */
  async get(id: string): Promise<{ record: RolloutRecord; decisions: readonly DecisionLogEntry[]; rollbackRefused: string | null; rollbackWarnings: string[] }> {
    const record = await this.#existing(id);
    const rollbackRefused = await this.#undoneByRollback(record);
    const { model } = record.state.spec;
    const rollbackWarnings = rollbackRefused === null ? await restoredVersionWarnings(record.state, this.#statusOf(model), this.#retiredOf(model), 'rollback').catch(() => []) : [];
    return { record, decisions: await this.#o.repository.decisions(id), rollbackRefused, rollbackWarnings };
  }

  async command(id: string, command: RolloutCommand, principal: Principal, options: RolloutCommandOptions = {}): Promise<CommandedRollout> {
    if (command === 'rollback') return this.#startsAndRollbacks.run(() => this.#command(id, command, principal, options));
    return this.#command(id, command, principal, options);
  }

  async #command(id: string, command: RolloutCommand, principal: Principal, options: RolloutCommandOptions): Promise<CommandedRollout> {
    const record = await this.#existing(id);
    if (command === 'rollback') await this.#refuseUndoingNewer(record);
    const controller = await this.#leader();
    const by = actorOf(principal);
    // Read before the rollback: it marks the previous production `production` again. Only a
    // warning: a rollback goes on without it when the statuses cannot be read.
    const warnings = command === 'rollback' ? await restoredVersionWarnings(record.state, this.#statusOf(record.state.spec.model), this.#retiredOf(record.state.spec.model), 'rollback').catch(() => []) : [];
    try {
      switch (command) {
        case 'pause':
          await controller.pause(id, by);
          break;
        case 'resume':
          await controller.resume(id, by, options.pausedSince === undefined ? {} : { pausedSince: options.pausedSince });
          break;
        case 'promote':
          await controller.promote(id, by, { full: options.full ?? true, ...(options.fromStep === undefined ? {} : { fromStep: options.fromStep }) });
          break;
        case 'abort':
          await controller.abort(id, by, options.reason);
          break;
        case 'rollback':
          await controller.rollback(id, by, options.reason);
          break;
      }
    } catch (error) {
      if (error instanceof RolloutCommandError) throw new ServiceError('conflict', error.message, { cause: error });
      // Deposed since #leader (its lock session dropped): the controller applied nothing.
      if (error instanceof RolloutControllerStoppedError) throw new ServiceError('retry_later', `${error.message}; retry shortly`, { cause: error });
      throw error;
    }
    await this.#audit(principal, `rollout.${command}`, id, {
      ...(command === 'promote' ? { full: options.full ?? true, ...(options.fromStep === undefined ? {} : { fromStep: options.fromStep }) } : {}),
      ...(command === 'resume' && options.pausedSince !== undefined ? { pausedSince: new Date(options.pausedSince).toISOString() } : {}),
      ...(options.reason ? { reason: options.reason } : {}),
    });
    for (const warning of warnings) {
      // The rollback stands; a warning that could not be noted is still returned.
      await controller.note(id, { kind: 'rollback', verdict: 'warning', message: warning, by }).catch(() => {});
    }
    const after = (await this.#o.repository.load(id))!;
    // Decided while the devices cannot be reached yet: the log says when they will be.
    if (command !== 'pause' && this.#o.fleetWaiting?.() && after.pendingActions.some((action) => action.kind === 'assign' || action.kind === 'revert')) {
      const noted = await controller.note(id, { kind: 'command', verdict: 'waiting-for-broker', message: fleetWaitingNote(command), by }).then(
        () => true,
        () => false, // the command stands; only the note is missing
      );
      if (noted) return { ...(await this.#o.repository.load(id))!, warnings };
    }
    return { ...after, warnings };
  }

  /** Checks the rollout exists, then streams its state and decisions (history first). */
  async watch(id: string, listener: (event: RolloutFeedEvent) => void, onError: (error: unknown) => void): Promise<() => void> {
    await this.assertExists(id);
    return this.#o.feed.subscribe(id, listener, onError);
  }

  /** A not_found ServiceError unless the rollout exists (one small query, no read of its state). */
  async assertExists(id: string): Promise<void> {
    if ((await this.#o.repository.revisionOf(id)) === undefined) throw new ServiceError('not_found', `no rollout ${id}`);
  }

  async #existing(id: string): Promise<RolloutRecord> {
    const record = await this.#o.repository.load(id);
    if (!record) throw new ServiceError('not_found', `no rollout ${id}`);
    return record;
  }

  async #leader(): Promise<RolloutController> {
    const controller = this.#o.controller();
    if (controller) return controller;
    const status = await this.#o.leadership.status();
    if (status.isLeader) {
      // Elected, but the controller is not there (the moment of the takeover, or a takeover that
      // failed): naming this server as the one to ask would send the operator round in a circle.
      // (An external broker still being connected to does not refuse commands: they wait for it.)
      // A takeover that failed for good is no reason to retry: waiting does not heal it.
      if (this.#o.leadership.takeoverFailed?.()) {
        throw new ServiceError('unavailable', `this server (${status.instance}) leads but its takeover of the rollouts failed (see its log); restart it once the cause is fixed`);
      }
      throw new ServiceError('retry_later', `this server (${status.instance}) leads but has not taken the rollouts over yet; retry shortly`);
    }
    // No leader elected (a failover under way): the same command may work shortly.
    if (status.leader === null) throw new ServiceError('retry_later', `this server (${status.instance}) is not the rollout leader, and none is elected right now; retry shortly`);
    throw new ServiceError('unavailable', `this server (${status.instance}) is not the rollout leader; send rollout commands to the leader, ${describeLeader(status.leader)}`);
  }

  /**
   * Rolling back a promoted rollout restores what ran before it, and rolling back a rolled-back,
   * aborted or failed one sends the baseline again to its devices not back on it. Once a newer
   * rollout of the model has promoted (or is under way), any of these would silently undo the
   * newer one: refused, naming it. (A rollout under way has no newer one: a start waits for it.)
   */
  async #refuseUndoingNewer(record: RolloutRecord): Promise<void> {
    const refused = await this.#undoneByRollback(record);
    if (refused !== null) throw new ServiceError('conflict', refused);
  }

  /** Why rolling `record` back would undo a newer rollout of its model (#refuseUndoingNewer), or null. */
  async #undoneByRollback(record: RolloutRecord): Promise<string | null> {
    if (!isTerminal(record.state)) return null;
    const { model } = record.state.spec;
    for (const newer of await this.#o.repository.list({ model })) {
      if (newer === record.state.id) return null; // newest first: the rest are older
      const other = await this.#o.repository.load(newer);
      if (other && (other.state.phase === 'Completed' || !isTerminal(other.state))) {
        return `rollout ${newer} of ${model} (${other.state.phase}, ${other.state.spec.candidateVersion}) came after this one; rolling this one back would undo it: roll back ${newer} instead`;
      }
    }
    return null;
  }

  async #audit(principal: Principal, action: string, id: string, details: Record<string, unknown>): Promise<void> {
    await this.#o.store.audit.append({ at: new Date().toISOString(), actor: actorOf(principal), action, target: `rollout:${id}`, details });
  }
}
