import type { Role } from '../../shared/protocol/payloads.ts';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../shared/util/log.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import { KeyedMutex } from '../../shared/util/mutex.ts';
import { AnalysisRun, type AnalysisHoldOff } from '../analysis/analysis-run.ts';
import type { Measurement } from '../analysis/measurement.ts';
import { promqlAlternation, promqlString } from '../analysis/query-template.ts';
import type { Scheduler } from '../analysis/scheduler.ts';
import type { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import { DeviceRolloutIndex } from './device-rollout-index.ts';
import { AnswerBatcher } from './answer-batcher.ts';
import type { AnswerListener, DeliveryResult, FleetPort, LateDeviceAnswer, ModelStatusPort, RecordGuard } from './fleet-port.ts';
import { EXPORTED_FINISHED_ROLLOUTS, type RolloutMetrics } from './rollout-metrics.ts';
import type { RolloutRecord, RolloutRepository } from './rollout-repository.ts';
import type { RolloutSpec } from './rollout-spec.ts';
import { setBounded } from '../../shared/util/bounded-map.ts';
import { awaitedDevices, awaitsLateAnswer, benchmarksCandidate, deliveredCohort, FleetListNeeded, isTerminal, next, nextWakeAt, RolloutCommandError, startRollout } from './rollout-state-machine.ts';
import type { DecisionLogEntry, DeviceReturn, LateAnswer, RolloutAction, RolloutEvent, RolloutState, Transition } from './rollout-state.ts';

/**
 * Drives rollouts: feeds events to the pure state machine, persists each transition through
 * the RolloutRepository before acting, executes the resulting actions through the FleetPort,
 * ModelStatusPort and the analysis engine, and feeds their results back as events.
 *
 * - Per rollout, transitions are serialized (a mutex); actions run outside it, concurrently,
 *   so a rollback never waits behind a slow delivery.
 * - recover() after a restart re-runs pending actions (same ids: no-ops where already done),
 *   resumes running analyses from their recorded measurements, and re-arms timers.
 * - Only one process may drive a rollout (the lead's advisory lock); a second one would be
 *   stopped by the repository's revision check.
 */
export interface RolloutControllerOptions {
  readonly repository: RolloutRepository;
  readonly fleet: FleetPort;
  readonly models: ModelStatusPort;
  readonly providers: MetricProviderResolver;
  readonly scheduler: Scheduler;
  readonly metrics?: RolloutMetrics;
  readonly logger?: Logger;
  /** Wait before retrying an action whose port call threw (the store or broker was down). */
  readonly actionRetryMs?: number;
  readonly newId?: () => string;
  /**
   * The start-up grace: for this long after recover() (a start, or this server elected leader),
   * measurements on the `prometheus` provider that fall due wait until it has passed, then run
   * (never later). Prometheus has not scraped a process that just started (its failed scrapes
   * during the restart left staleness markers), so a query of the series it exports would come
   * back empty: an Inconclusive measurement that pauses the rollout for a human. Default
   * DEFAULT_STARTUP_GRACE_MS; 0 turns it off. Other providers never wait (the builtin one reads
   * this process's own series, restored before the rollouts are picked up).
   */
  readonly startupGraceMs?: number;
  /**
   * The fleet label of this server's device series (DEVICE_REPORT_LABELS: its signing key's id):
   * the relative checks keep to it, and analyses get it as `{{args.fleet}}` ('' when unset, which
   * in PromQL matches series without the label).
   */
  readonly fleetLabel?: string;
  /**
   * After recover(): how often the controller lists the unfinished rollouts from the store and picks
   * up any it does not drive (one stored by a deposed leader's start whose insert committed after this
   * controller recovered). The first look comes after at most ADOPT_FIRST_MS. Default DEFAULT_ADOPT_EVERY_MS.
   */
  readonly adoptEveryMs?: number;
  /** This server's node id, named in the `takeover` entry of a rollout it picks up undriven (see #adoptUndriven). */
  readonly nodeId?: string;
}

/** How often a leading controller looks for unfinished rollouts nobody drives (see adoptEveryMs). */
export const DEFAULT_ADOPT_EVERY_MS = 30_000;

/** The first such look after recover(): a deposed leader's insert commits moments after the takeover. */
const ADOPT_FIRST_MS = 5_000;

/** A few scrape intervals of the shipped Prometheus configuration (10 s): `--analysis-startup-grace` 30. */
export const DEFAULT_STARTUP_GRACE_MS = 30_000;

/** The providers whose measurements wait out the start-up grace. */
const SCRAPING_PROVIDERS = ['prometheus'] as const;

/** The longest wait before a failed action runs again (its backoff doubles from actionRetryMs). */
export const MAX_ACTION_RETRY_MS = 5 * 60_000;

/** Rollouts whose awaited devices are kept (one per model speaks for a device: a few are live at once). */
const AWAITED_CACHE_ROLLOUTS = 64;

/**
 * Thrown by start, dispatch (every command) and note on a stopped controller (its server no longer
 * leads): nothing was stored (unless `stored`). `outcome` says so to the operator (RolloutService
 * answers a 503: "retry shortly", or, for a stored start, that the leader picks it up).
 */
export class RolloutControllerStoppedError extends Error {
  /**
   * stored: the id of a rollout the start stored all the same (deposed while its insert committed):
   * the leader picks it up (adoptEveryMs), and starting it again would be refused.
   */
  constructor(
    outcome = 'nothing was started',
    readonly stored?: string,
  ) {
    super(`this server stopped driving rollouts (it no longer holds the rollout leadership); ${outcome}`);
    this.name = 'RolloutControllerStoppedError';
  }
}

export class RolloutController {
  readonly #o: RolloutControllerOptions;
  readonly #locks = new KeyedMutex();
  /** While recover() exports the rollouts' series again: the rollouts committed meanwhile. */
  #committedDuringRestore: Set<string> | undefined;
  readonly #inFlight = new Set<string>();
  readonly #runs = new Map<string, { runId: string; run: AnalysisRun }>();
  readonly #wakers = new Map<string, { at: number; cancel: () => void }>();
  readonly #retries = new Map<string, () => void>();
  /** Consecutive failures of each pending action (`rollout/action`) that failed its last attempt. */
  readonly #failures = new Map<string, number>();
  readonly #idle = new Set<Promise<unknown>>();
  readonly #deviceRollouts: DeviceRolloutIndex;
  readonly #awaitedCache = new Map<string, { revision: number; devices: ReadonlySet<string> }>();
  /** Late answers gathering per rollout (see deviceAnswered). */
  readonly #lateAnswers = new Map<string, AnswerBatcher<LateAnswer>>();
  /**
   * The rollouts this controller drives: recovered, started (from before their insert), or committed
   * by it (a command on a rollout makes it drive it). The look for undriven rollouts skips them.
   */
  readonly #driven = new Set<string>();
  /** Cancels the next look for undriven rollouts (armed by recover()). */
  #adoptTimer: (() => void) | undefined;
  #stopped = false;
  /** Set by recover(): until when measurements on a scraping provider wait (the start-up grace). */
  #holdOff: AnalysisHoldOff | undefined;

  constructor(options: RolloutControllerOptions) {
    this.#o = options;
    this.#deviceRollouts = new DeviceRolloutIndex(options.repository);
  }

  /** Starts a rollout of a validated spec; returns its state after the first transition. */
  /**
   * warnings: about the spec (spec-warnings.ts), recorded in its decision log with the start;
   * `stateWarnings`, those that need the started state (its devices' baselines), added to them.
   */
  async start(spec: RolloutSpec, options: { id?: string; by: string; warnings?: readonly string[]; stateWarnings?: (state: RolloutState) => Promise<readonly string[]> }): Promise<RolloutState> {
    // A stopped controller (deposed: its server's lock session dropped, and a new controller, if
    // any, has recovered the unfinished rollouts already) would store a rollout that nobody drives.
    if (this.#stopped) throw new RolloutControllerStoppedError();
    const id = options.id ?? this.#o.newId?.() ?? `ro-${randomBytes(6).toString('hex')}`;
    const [devices, previousProduction] = await Promise.all([this.#o.fleet.listDevices(spec.model), this.#o.models.productionVersion(spec.model)]);
    if (previousProduction === spec.candidateVersion) throw new RolloutCommandError(`${spec.model} ${spec.candidateVersion} is already production`);
    const at = this.#now();
    const start = (warnings: readonly string[]) =>
      startRollout(id, spec, { type: 'start', at, by: options.by, devices: devices.map((d) => ({ id: d.id, labels: { ...d.labels }, baseline: d.baseline })), previousProduction, ...(warnings.length ? { warnings } : {}) });
    let transition = start(options.warnings ?? []);
    const more = options.stateWarnings ? await options.stateWarnings(transition.state) : [];
    // The start is a pure function of its inputs: made again with them all, at the same time.
    if (more.length > 0) transition = start([...(options.warnings ?? []), ...more]);
    // Again after the reads above (stopped while they ran).
    if (this.#stopped) throw new RolloutControllerStoppedError();
    // Driven from before its insert commits: the look for undriven rollouts must not pick it up too.
    const fresh = !this.#driven.has(id);
    if (fresh) this.#driven.add(id);
    try {
      await this.#o.repository.create({ state: transition.state, pendingActions: transition.actions, decisions: transition.decisions });
    } catch (error) {
      if (fresh) this.#driven.delete(id);
      throw error;
    }
    // Stopped while the insert committed (deposed): a new leader may have recovered before it did.
    // Stored all the same, nobody drives it until the leader's next look for undriven rollouts
    // (adoptEveryMs) picks it up; starting it again would be refused (one rollout per model).
    if (this.#stopped) throw new RolloutControllerStoppedError(`the rollout ${id} was stored all the same, and the rollout leader will pick it up shortly; do not start it again`, id);
    this.#deviceRollouts.add(transition.state);
    this.#afterCommit(transition.state, transition.decisions);
    this.#drain(id);
    return transition.state;
  }

  pause(id: string, by: string): Promise<RolloutState> {
    return this.dispatch(id, { type: 'pause', at: this.#now(), by });
  }

  /** pausedSince: when the pause the operator resumes began; refused if the rollout is no longer in it. */
  resume(id: string, by: string, options: { pausedSince?: number } = {}): Promise<RolloutState> {
    return this.dispatch(id, { type: 'resume', at: this.#now(), by, ...(options.pausedSince === undefined ? {} : { pausedSince: options.pausedSince }) });
  }

  /**
   * full: straight to 100%, skipping all remaining steps and analysis; else skip the current step.
   * fromStep: the step index the operator promotes from; refused if the rollout is no longer there.
   */
  promote(id: string, by: string, options: { full?: boolean; fromStep?: number } = {}): Promise<RolloutState> {
    return this.dispatch(id, { type: 'promote', at: this.#now(), by, full: options.full ?? true, ...(options.fromStep === undefined ? {} : { fromStep: options.fromStep }) });
  }

  abort(id: string, by: string, reason?: string): Promise<RolloutState> {
    return this.dispatch(id, { type: 'abort', at: this.#now(), by, ...(reason ? { reason } : {}) });
  }

  /**
   * One call reverts every device of the rollout, even after full promotion; then also the
   * devices that run the promoted candidate without being among the rollout's targets.
   */
  async rollback(id: string, by: string, reason?: string): Promise<RolloutState> {
    // The fleet is listed outside the rollout's lock (a read of the device table), for a rollout
    // that is or may be promoted by the time the lock is taken; one promoted meanwhile is listed then.
    let { state } = await this.#load(id);
    const mayBePromoted = (s: RolloutState) => s.phase === 'Completed' || (!isTerminal(s) && s.stepIndex >= s.spec.steps.length);
    for (let attempt = 1; ; attempt++) {
      const outside = mayBePromoted(state) ? await this.#outsideRollout(state) : {};
      try {
        const stalled = this.#stalledActions(id);
        const rolledBack = await this.dispatch(id, { type: 'rollback', at: this.#now(), by, ...(reason ? { reason } : {}), ...outside, ...(stalled.length > 0 ? { stalledActions: stalled } : {}) });
        // It speaks for its devices now (those it took back from outside too), when they come back online.
        this.#deviceRollouts.add(rolledBack);
        // What waited out a failure backoff (superseded by now, or still to run) runs at once.
        this.#retryNow(id);
        return rolledBack;
      } catch (error) {
        if (!(error instanceof FleetListNeeded) || attempt > 1) throw error;
        ({ state } = await this.#load(id));
      }
    }
  }

  /** The devices that run the rollout's candidate now (the rollback of a promoted rollout takes back those outside it). */
  async #outsideRollout(state: RolloutState): Promise<Pick<Extract<RolloutEvent, { type: 'rollback' }>, 'runningCandidate' | 'fleetUnlisted'>> {
    try {
      const fleet = await this.#o.fleet.listDevices(state.spec.model);
      return { runningCandidate: fleet.filter((device) => device.baseline === state.spec.candidateVersion).map((device) => ({ id: device.id, labels: { ...device.labels } })) };
    } catch (error) {
      // The rollout's own devices go back whatever happens: the rollback says what it could not do.
      this.#o.logger?.warn({ rollout: state.id, err: error }, 'rollback: the fleet could not be listed, devices outside the rollout are not taken back');
      return { fleetUnlisted: error instanceof Error ? error.message : String(error) };
    }
  }

  /**
   * A device came back online, or answered something (`answered`, DeviceReturn): per model, the
   * newest rollout that includes it re-sends what it wants the device to run, if it waits for the
   * device (older rollouts of the model are history and stay silent).
   */
  async deviceOnline(deviceId: string, cause: DeviceReturn = 'online'): Promise<void> {
    for (const id of await this.#deviceRollouts.rolloutsOf(deviceId)) {
      // Most reconnects find nothing to resend: skip the lock and the commit (dispatch checks again).
      if ((await this.#awaited(id)).has(deviceId)) await this.dispatch(id, { type: 'deviceOnline', at: this.#now(), deviceId, ...(cause === 'online' ? {} : { cause }) });
    }
  }

  /**
   * The devices a rollout waits to see again, as of its stored revision: read from the state only
   * when the revision moved (a fleet reconnecting after a restart would otherwise parse a
   * multi-megabyte state once per device). Keyed by the revision, so it is right whoever committed.
   */
  async #awaited(id: string): Promise<ReadonlySet<string>> {
    const revision = await this.#o.repository.revisionOf(id);
    if (revision === undefined) return new Set();
    const cached = this.#awaitedCache.get(id);
    if (cached?.revision === revision) return cached.devices;
    const record = await this.#o.repository.load(id);
    if (!record) return new Set();
    const devices = awaitedDevices(record.state);
    setBounded(this.#awaitedCache, id, { revision: record.revision, devices }, AWAITED_CACHE_ROLLOUTS);
    return devices;
  }

  /**
   * A device answered one of the rollouts' actions and no waiting action took the answer (it had
   * stopped waiting: a frozen device, a stalled link the broker did not notice, an answer just
   * after the timeout), so a device that did what it was last sent is not left counted as
   * offline. Answers gather per rollout for ANSWER_BATCH_MS and are then checked against one load
   * of its state and recorded in one commit: a thousand late answers cost a few loads, not a
   * thousand.
   */
  async deviceAnswered(deviceId: string, actionId: string, result: LateDeviceAnswer): Promise<void> {
    if (this.#stopped) return;
    // The rollout whose action it answers (`<rollout id>-a<n>`), whether or not it speaks for the
    // device now: its state decides whether it still waits for this answer.
    const id = /^(.+)-a\d+$/.exec(actionId)?.[1];
    if (id === undefined || (await this.#o.repository.revisionOf(id)) === undefined) return; // an operator's assignment
    if (this.#stopped) return;
    let batcher = this.#lateAnswers.get(id);
    if (!batcher) {
      batcher = new AnswerBatcher(this.#o.scheduler, (batch) => {
        this.#lateAnswers.delete(id);
        this.#track(this.#recordLateAnswers(id, batch).catch((error) => this.#report(id, 'recording late answers', error)));
      });
      this.#lateAnswers.set(id, batcher);
    }
    batcher.add({ deviceId, actionId, ...result });
  }

  async #recordLateAnswers(id: string, answers: readonly LateAnswer[]): Promise<void> {
    if (this.#stopped) return;
    const record = await this.#o.repository.load(id);
    const news = record ? answers.filter((answer) => awaitsLateAnswer(record.state, answer)) : [];
    if (news.length > 0) await this.dispatch(id, { type: 'lateAnswer', at: this.#now(), devices: news });
  }

  /**
   * A device answered a candidate assignment `benchmark-failed`: the rollout whose assignment it was
   * fails, unless the model that failed was the device's own (`failedRole` `active`).
   */
  async benchmarkFailed(deviceId: string, assignmentId: string, reason: string, failedRole: Role = 'candidate'): Promise<void> {
    for (const id of await this.#deviceRollouts.rolloutsOf(deviceId)) {
      const record = await this.#o.repository.load(id);
      if (record && benchmarksCandidate(record.state, deviceId, assignmentId)) {
        await this.dispatch(id, { type: 'benchmarkFailed', at: this.#now(), deviceId, actionId: assignmentId, reason, failedRole });
      }
    }
  }

  async status(id: string): Promise<RolloutState> {
    return (await this.#load(id)).state;
  }

  decisions(id: string, options?: { afterId?: string; limit?: number }): Promise<readonly DecisionLogEntry[]> {
    return this.#o.repository.decisions(id, options);
  }

  /** What recover() picked up, as it was then, for noteTakeover's entries. */
  readonly #tookOver = new Map<string, { at: Date; phase: string; pending: number }>();

  /** After a restart: finish pending actions, resume analyses, re-arm timers. */
  async recover(): Promise<readonly string[]> {
    const graceMs = this.#o.startupGraceMs ?? DEFAULT_STARTUP_GRACE_MS;
    if (graceMs > 0) {
      const takeover = this.#o.scheduler.now();
      this.#holdOff = {
        until: new Date(takeover.getTime() + graceMs),
        providers: SCRAPING_PROVIDERS,
        reason: `this server took over the rollouts at ${takeover.toISOString()} (a restart or a new leader), and Prometheus measurements wait ${graceMs / 1000} s (--analysis-startup-grace) for Prometheus to scrape it again`,
      };
    }
    const ids = await this.#o.repository.list({ unfinished: true });
    await this.#restoreMetrics(ids);
    for (const id of ids) {
      const record = await this.#o.repository.load(id);
      if (!record) continue;
      this.#o.logger?.info({ rollout: id, phase: record.state.phase, step: record.state.stepIndex, pending: record.pendingActions.length }, 'resuming rollout');
      this.#tookOver.set(id, { at: this.#o.scheduler.now(), phase: record.state.phase, pending: record.pendingActions.length });
      this.#pickUp(record.state);
    }
    this.#scheduleAdoption(Math.min(ADOPT_FIRST_MS, this.#o.adoptEveryMs ?? DEFAULT_ADOPT_EVERY_MS));
    return ids;
  }

  /**
   * Writes a `takeover` entry (verdict `driven`) into the decision log of each of `ids` (what
   * recover() resumed) naming `node`, the server that drives them from now on: called once the
   * takeover has succeeded, never for one that failed (it is tried again at the next election, and
   * would otherwise write an entry each time). An entry that cannot be written is skipped: the log
   * misses it, the rollout does not.
   */
  async noteTakeover(ids: readonly string[], node: string): Promise<void> {
    for (const id of ids) {
      try {
        // As the rollout was when this controller picked it up: it drives it from then on, so by now
        // (a broker connection waited for) it may have decided more, whose entries come first.
        const seen = this.#tookOver.get(id);
        this.#tookOver.delete(id);
        const record = seen ? undefined : await this.#o.repository.load(id);
        if (!seen && !record) continue;
        const { at, phase, pending } = seen ?? { at: undefined, phase: record!.state.phase, pending: record!.pendingActions.length };
        const resumes = pending > 0 ? `; ${pending} pending action${pending === 1 ? '' : 's'} run again (devices ignore repeats)` : '';
        const when = at ? ` at ${at.toISOString()}` : '';
        const message = `server node ${node} took over the rollout${when} (a restart, a new leader, or this server leading again after it lost the lead) in phase ${phase}${resumes}`;
        await this.note(id, { kind: 'takeover', verdict: 'driven', message });
      } catch (error) {
        if (error instanceof RolloutControllerStoppedError) return;
        this.#o.logger?.warn({ rollout: id, err: errorMessage(error) }, 'the takeover entry of a resumed rollout could not be written to its decision log');
      }
    }
  }

  /** Arms the next look for undriven rollouts (one at a time: the next is armed when one is done). */
  #scheduleAdoption(delayMs: number): void {
    if (this.#stopped) return;
    this.#adoptTimer?.();
    this.#adoptTimer = this.#o.scheduler.schedule(delayMs, () => {
      this.#adoptTimer = undefined;
      this.#track(
        this.#adoptUndriven()
          .catch((error) => this.#o.logger?.warn({ err: error }, `looking for unfinished rollouts nobody drives failed: ${errorMessage(error)}`))
          .finally(() => this.#scheduleAdoption(this.#o.adoptEveryMs ?? DEFAULT_ADOPT_EVERY_MS)),
      );
    });
  }

  /**
   * Picks up the unfinished rollouts in the store that this controller does not drive, as recover()
   * does: a deposed leader's start whose insert committed after this controller had recovered (its
   * server answered 503 "stored ... the leader will pick it up"), which would else run nowhere and
   * block every later start of its model. Each is checked and picked up under its lock, where a
   * command commits: one this controller committed meanwhile made it driven already, never twice.
   */
  async #adoptUndriven(): Promise<void> {
    if (this.#stopped) return;
    for (const id of await this.#o.repository.list({ unfinished: true })) {
      if (this.#stopped) return;
      if (this.#driven.has(id)) continue;
      let adopted: { phase: string } | undefined;
      await this.#locks.run(id, async () => {
        if (this.#stopped || this.#driven.has(id)) return;
        const record = await this.#o.repository.load(id);
        if (!record || this.#stopped || this.#driven.has(id)) return;
        // Its decisions were never exported here (another server made them): exported from its whole log.
        const metrics = this.#o.metrics;
        const whole = metrics && !metrics.has(id) ? await this.#allDecisions(id) : undefined;
        if (this.#stopped || this.#driven.has(id)) return;
        this.#o.logger?.info(
          { rollout: id, phase: record.state.phase, step: record.state.stepIndex, pending: record.pendingActions.length },
          'picking up an unfinished rollout nobody drives (stored by a server deposed while it started it)',
        );
        this.#deviceRollouts.add(record.state);
        this.#pickUp(record.state, whole);
        adopted = { phase: record.state.phase };
      });
      // Its log says which server drives it from now on, as a resumed rollout's does (noteTakeover).
      if (adopted) await this.#noteAdopted(id, adopted.phase);
    }
  }

  async #noteAdopted(id: string, phase: string): Promise<void> {
    const node = this.#o.nodeId ? `server node ${this.#o.nodeId}` : 'this server';
    const message = `${node} picked up the rollout in phase ${phase}: no server drove it (the server that started it stopped leading while it stored it)`;
    try {
      await this.note(id, { kind: 'takeover', verdict: 'driven', message });
    } catch (error) {
      if (error instanceof RolloutControllerStoppedError) return;
      this.#o.logger?.warn({ rollout: id, err: errorMessage(error) }, 'the takeover entry of a picked-up rollout could not be written to its decision log');
    }
  }

  /**
   * Exports again what the server exported before it restarted (or before another one led): the
   * last EXPORTED_FINISHED_ROLLOUTS finished rollouts (the last changed) and the unfinished ones,
   * each with its whole decision log, so the decision counters go on from the counts they had and
   * the decision timestamps (FleetpruneRolloutFailed reads them) stay. Each is read and exported
   * under the rollout's lock, replacing what is exported for it: a decision committed meanwhile
   * (an operator's command, a device coming back online) is counted once, by the log or live.
   */
  async #restoreMetrics(unfinished: readonly string[]): Promise<void> {
    const { metrics, repository } = this.#o;
    if (!metrics) return;
    // A rollout committed meanwhile may fall between the two lists (finished when the unfinished
    // ones were read, its rollback pending when the finished ones are): restored again at the end.
    const committed = new Set<string>();
    this.#committedDuringRestore = committed;
    const restoreOne = (id: string) =>
      this.#locks.run(id, async () => {
        const state = (await repository.load(id))?.state;
        const decisions = state && (await this.#allDecisions(id));
        // Stopped meanwhile (deposed): its series were dropped, and stay dropped.
        if (!state || !decisions || this.#stopped) return;
        try {
          metrics.restore(state, decisions);
        } catch (error) {
          // Exported series are for watching: one the stored log cannot give must not keep the
          // server from starting, or from taking over rollouts (and their rollbacks).
          this.#o.logger?.error({ rollout: id, err: errorMessage(error) }, 'the rollout\'s metrics could not be restored from its decision log; it runs on, its series are exported from its next decision');
        }
      });
    try {
      const finished = await repository.list({ finishedByLastChange: true, limit: EXPORTED_FINISHED_ROLLOUTS });
      const restored = [...finished].reverse().concat(unfinished);
      for (const id of restored) await restoreOne(id);
      for (const id of committed) if (!restored.includes(id)) await restoreOne(id);
    } finally {
      this.#committedDuringRestore = undefined;
    }
  }

  async #allDecisions(id: string): Promise<DecisionLogEntry[]> {
    const all: DecisionLogEntry[] = [];
    for (;;) {
      const page = await this.#o.repository.decisions(id, { ...(all.length > 0 ? { afterId: all.at(-1)!.id } : {}), limit: 1000 });
      all.push(...page);
      if (page.length < 1000) return all;
    }
  }

  /** Drives a rollout from its stored state: timers armed, the analysis running, pending actions run. */
  #pickUp(state: RolloutState, whole?: readonly DecisionLogEntry[]): void {
    this.#afterCommit(state, [], whole);
    this.#ensureAnalysis(state);
    this.#drain(state.id);
  }

  /**
   * Adds a decision to the rollout's log that changes nothing else: what its server can say about
   * a decision it just made (a rollback decided while the devices cannot be reached yet).
   */
  async note(id: string, entry: { kind: DecisionLogEntry['kind']; verdict: string; message: string; by?: string }): Promise<void> {
    if (this.#stopped) throw new RolloutControllerStoppedError('nothing was noted');
    await this.#locks.run(id, async () => {
      const record = await this.#load(id);
      const seq = record.state.seq + 1;
      const state: RolloutState = { ...record.state, seq };
      const decision: DecisionLogEntry = { id: `${id}-d${seq}`, rolloutId: id, at: this.#now(), stepIndex: state.stepIndex, ...entry };
      await this.#commit(record, { state, actions: [], decisions: [decision] });
    });
  }

  /**
   * Stops timers and analyses (for shutdown, or handing over to another process). An action being
   * carried out records nothing from now on (its guard returns without recording; one already
   * recording is fenced by the rollout's revision in the fleet's transaction).
   */
  stop(): void {
    this.#stopped = true;
    this.#adoptTimer?.();
    this.#adoptTimer = undefined;
    for (const { run } of this.#runs.values()) run.stop();
    this.#runs.clear();
    for (const { cancel } of this.#wakers.values()) cancel();
    this.#wakers.clear();
    for (const batcher of this.#lateAnswers.values()) batcher.close();
    this.#lateAnswers.clear();
    for (const cancel of this.#retries.values()) cancel();
    this.#retries.clear();
    this.#failures.clear();
  }

  /** Resolves when no action is executing (for tests and graceful shutdown). */
  async idle(): Promise<void> {
    while (this.#idle.size > 0) await Promise.allSettled([...this.#idle]);
  }

  /** Applies one event and persists the transition; runs the new actions in the background. */
  async dispatch(id: string, event: RolloutEvent, completedActionId?: string): Promise<RolloutState> {
    if (this.#stopped) throw new RolloutControllerStoppedError('nothing was changed');
    const state = await this.#locks.run(id, async () => {
      const record = await this.#load(id);
      const transition = next(record.state, event);
      await this.#commit(record, transition, completedActionId);
      return transition.state;
    });
    this.#ensureAnalysis(state);
    this.#drain(id);
    return state;
  }

  async #commit(record: RolloutRecord, transition: Transition, completedActionId?: string): Promise<void> {
    const pending = [...record.pendingActions.filter((action) => action.id !== completedActionId), ...transition.actions];
    await this.#o.repository.commit(transition.state.id, {
      expectedRevision: record.revision,
      state: transition.state,
      pendingActions: pending,
      executedActionIds: completedActionId ? [completedActionId] : [],
      decisions: transition.decisions,
    });
    // Not exported (a finished rollout evicted, or not restored yet): exported from its whole log, as a restart would.
    const metrics = this.#o.metrics;
    const whole = metrics && !this.#stopped && !metrics.has(transition.state.id) ? await this.#allDecisions(transition.state.id) : undefined;
    this.#afterCommit(transition.state, transition.decisions, whole);
  }

  #afterCommit(state: RolloutState, decisions: readonly DecisionLogEntry[], whole?: readonly DecisionLogEntry[]): void {
    // Committed or picked up here: this controller drives it from now on.
    this.#driven.add(state.id);
    // A commit that lands after stop() (its server deposed, its series dropped) must not export
    // them again: they would stay frozen beside the new leader's.
    if (!this.#stopped) {
      if (whole) this.#o.metrics?.restore(state, whole);
      else this.#o.metrics?.observe(state, decisions);
    }
    this.#committedDuringRestore?.add(state.id);
    for (const decision of decisions) {
      // A measurement that could not be taken (the metrics backend failed) is a warning with its
      // reason, never an error-level stack trace: the analysis handles it by its limits.
      const level = (decision.kind === 'measurement' || decision.kind === 'analysis') && decision.verdict === 'Error' ? 'warn' : 'info';
      this.#o.logger?.[level]({ rollout: state.id, step: decision.stepIndex, kind: decision.kind, verdict: decision.verdict }, decision.message);
    }
    this.#armWaker(state);
  }

  #armWaker(state: RolloutState): void {
    if (this.#stopped) return;
    const at = nextWakeAt(state);
    const current = this.#wakers.get(state.id);
    if (current && current.at === at) return;
    current?.cancel();
    this.#wakers.delete(state.id);
    if (at === undefined) return;
    const cancel = this.#o.scheduler.schedule(at - this.#now(), () => {
      this.#wakers.delete(state.id);
      this.#track(this.dispatch(state.id, { type: 'tick', at: this.#now() }).catch((error) => this.#resumeLater(state.id, 'tick', error)));
    });
    this.#wakers.set(state.id, { at, cancel });
  }

  /** Runs every pending action of the rollout that is not already running or waiting for its retry. */
  #drain(id: string): void {
    if (this.#stopped) return;
    this.#track(
      (async () => {
        const record = await this.#o.repository.load(id);
        let earlierStatusChange = false;
        for (const action of record?.pendingActions ?? []) {
          const key = `${id}/${action.id}`;
          // Version status changes land in the order they were decided, one at a time: a
          // completion's "production" still on its way (a slow transaction, a retry) must not
          // land after a rollback's restore of the previous version. The next one runs when the
          // one before it has been recorded (that commit drains again).
          if (action.kind === 'markVersion') {
            if (earlierStatusChange) continue;
            earlierStatusChange = true;
          }
          // A failed action waits out its backoff: every tick, measurement or device coming online
          // drains, and must not run it again each time.
          if (this.#inFlight.has(key) || this.#retries.has(key)) continue;
          this.#inFlight.add(key);
          this.#track(this.#execute(id, action).finally(() => this.#inFlight.delete(key)));
        }
      })().catch((error) => this.#resumeLater(id, 'drain', error)),
    );
  }

  async #execute(id: string, action: RolloutAction): Promise<void> {
    const key = `${id}/${action.id}`;
    let result: RolloutEvent;
    try {
      if (await this.#o.repository.isExecuted(id, action.id)) return;
      result = await this.#perform(id, action);
    } catch (error) {
      // Stopped meanwhile (the server stopping or deposed, the broker connection not made yet): the
      // action stays pending, and whoever drives the rollout next runs it. Not a failure to alert on.
      if (this.#stopped) {
        this.#o.logger?.info({ rollout: id }, `action ${action.id} (${action.kind}) left pending for whoever drives the rollout next: ${errorMessage(error)}`);
        return;
      }
      this.#report(id, `action ${action.id} (${action.kind})`, error);
      // One timer per failing action, its delay doubling up to MAX_ACTION_RETRY_MS: a store or
      // broker that stays down gets a retry now and then, not a storm.
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      this.#showFailing(id);
      this.#retries.get(key)?.();
      const delay = Math.min((this.#o.actionRetryMs ?? 5000) * 2 ** (failures - 1), MAX_ACTION_RETRY_MS);
      const cancel = this.#o.scheduler.schedule(delay, () => {
        this.#retries.delete(key);
        this.#drain(id);
      });
      this.#retries.set(key, cancel);
      return;
    }
    if (this.#failures.delete(key)) this.#showFailing(id);
    if (this.#stopped) return;
    try {
      await this.dispatch(id, result, action.id);
    } catch (error) {
      // Not recorded: the action stays pending and runs again (same id) when the rollout resumes.
      this.#resumeLater(id, `recording the result of action ${action.id}`, error);
    }
  }

  async #perform(id: string, action: RolloutAction): Promise<RolloutEvent> {
    const at = () => this.#now();
    // Actions run outside the rollout's lock, and a slow or retried one can still be running when
    // a newer decision (a rollback) has sent its devices something else. Its recording step takes
    // the lock and covers only the devices whose current action it still is, so an older action
    // can never overwrite what a newer one recorded for a device; nor devices someone else has
    // assigned something since the rollout started.
    // The lock is this controller's only: the recording is fenced by the revision it decided at, which
    // the fleet holds in its recording transaction (RecordFence), so a controller deposed meanwhile
    // (another one committed a rollback since) records nothing. A stopped one does not record at all.
    const guard: RecordGuard = (record) =>
      this.#locks.run(id, async () => {
        if (this.#stopped) return;
        const { state, revision } = await this.#load(id);
        const owned = await this.#notTakenOver(state, action, state.devices.filter((device) => device.actionId === action.id).map((device) => device.id));
        if (this.#stopped) return;
        await record(owned, { rolloutId: id, revision });
      });
    switch (action.kind) {
      case 'assign':
        return this.#deviceAction(id, action.id, (onAnswer) =>
          this.#o.fleet.assign({ commandId: action.id, model: action.model, version: action.version, role: action.role, deviceIds: action.devices, guard, onAnswer }),
        );
      case 'revert':
        return this.#deviceAction(id, action.id, (onAnswer) => this.#o.fleet.revert({ commandId: action.id, model: action.model, devices: action.devices, guard, onAnswer }));
      case 'markVersion':
        await this.#o.models.setVersionStatus({ commandId: action.id, model: action.model, version: action.version, status: action.status, reason: action.reason });
        return { type: 'actionResult', at: at(), actionId: action.id };
      case 'startAnalysis':
        // The run starts from the committed state (see #ensureAnalysis); nothing else to do.
        return { type: 'actionResult', at: at(), actionId: action.id };
      case 'stopAnalysis': {
        const running = this.#runs.get(id);
        if (running?.runId === action.runId) {
          running.run.stop();
          this.#runs.delete(id);
        }
        return { type: 'actionResult', at: at(), actionId: action.id };
      }
    }
  }

  /**
   * Runs a device action, recording its devices' answers as they come (in batches) rather than
   * only when the slowest device has answered or timed out; its result then records every device.
   */
  async #deviceAction(id: string, actionId: string, run: (onAnswer: AnswerListener) => Promise<readonly DeliveryResult[]>): Promise<RolloutEvent> {
    const answers = new AnswerBatcher(this.#o.scheduler, (batch) => {
      if (this.#stopped) return;
      const devices = batch.flatMap(({ deviceId, outcome, reason }) => (outcome === 'offline' ? [] : [{ deviceId, outcome, ...(reason ? { reason } : {}) }]));
      this.#track(this.dispatch(id, { type: 'actionProgress', at: this.#now(), actionId, devices }).catch((error) => this.#report(id, `recording answers to action ${actionId}`, error)));
    });
    try {
      const results = await run(answers.add);
      return { type: 'actionResult', at: this.#now(), actionId, devices: results.map(({ deviceId, outcome, reason }) => ({ deviceId, outcome, ...(reason ? { reason } : {}) })) };
    } finally {
      answers.close();
    }
  }

  /**
   * The devices this rollout may still change. One that someone else (an operator's direct
   * assignment, a newer rollout) has since given a version this rollout did not decide for it is
   * no longer this rollout's: not when it comes back online, not when this rollout is rolled back.
   * Assignments older than the rollout, its own, and others carrying a version it decided (a newer
   * rollout's rollback restoring this one's candidate) leave the device in its hands, except from a
   * revert when the device has taken a newer one than the store holds (RetainedAssignment.outdated).
   */
  async #notTakenOver(state: RolloutState, action: RolloutAction, deviceIds: readonly string[]): Promise<string[]> {
    const retained = await this.#o.fleet.retainedAssignments?.(deviceIds);
    if (!retained) return [...deviceIds];
    const revertTo = new Map(action.kind === 'revert' ? action.devices.map((device) => [device.deviceId, device.version]) : []);
    const decided = (deviceId: string): (string | null)[] =>
      action.kind === 'assign' ? [action.version] : [state.spec.candidateVersion, revertTo.get(deviceId) ?? null];
    return deviceIds.filter((deviceId) => {
      const current = retained.get(deviceId);
      // A revert leaves alone a device that moved on past anything the store holds (restored from
      // an older backup): it runs what a later assignment gave it. Not an assignment: the device
      // is no one else's, and a rollout started since may send it its candidate (what it claims
      // would otherwise fail every rollout that targets it).
      if (action.kind === 'revert' && current?.outdated) return false;
      if (!current || current.id.startsWith(`${state.id}-`) || Date.parse(current.issuedAt) < state.createdAt) return true;
      return current.model === state.spec.model && decided(deviceId).includes(current.version);
    });
  }

  /** Starts (or resumes) the in-memory run for the state's running analysis, if not already running. */
  #ensureAnalysis(state: RolloutState): void {
    if (this.#stopped) return;
    const analysis = state.analysis;
    const running = this.#runs.get(state.id);
    if (!analysis || analysis.phase !== 'Running' || isTerminal(state) || state.phase === 'Paused') {
      // Whatever still runs in memory is stale: the state has moved on.
      if (running) {
        running.run.stop();
        this.#runs.delete(state.id);
      }
      return;
    }
    if (running?.runId === analysis.runId) return;
    running?.run.stop();
    const step = state.spec.steps[analysis.stepIndex];
    if (step?.kind !== 'analysis') return;
    const devices = deliveredCohort(state);
    const runId = analysis.runId;
    const run = new AnalysisRun({
      metrics: step.metrics,
      providers: this.#o.providers,
      scheduler: this.#o.scheduler,
      startedAt: new Date(analysis.startedAt),
      previous: analysis.measurements,
      ...(this.#holdOff && this.#holdOff.until.getTime() > this.#now() ? { holdOff: this.#holdOff } : {}),
      onHeld: (metric, dueAt, until) =>
        this.#o.logger?.info({ rollout: state.id, metric, dueAt: dueAt.toISOString(), until: until.toISOString() }, `measurement of ${metric} waits for the start-up grace until ${until.toISOString()}: Prometheus has not scraped this server since it took over the rollouts`),
      context: {
        model: state.spec.model,
        candidateVersion: state.spec.candidateVersion,
        devices,
        baselineVersions: baselineVersionsOf(state, devices),
        // Reports from before this rollout (an earlier rollout of the same version) are not its evidence.
        notBefore: new Date(state.createdAt),
        ...(this.#o.fleetLabel === undefined ? {} : { fleet: this.#o.fleetLabel }),
        args: {
          fleet: this.#o.fleetLabel ?? '',
          rollout: state.id,
          model: state.spec.model,
          candidateVersion: state.spec.candidateVersion,
          cohort: promqlString(promqlAlternation(devices)),
          cohortSize: String(devices.length),
          step: String(analysis.stepIndex),
        },
      },
      onMeasurement: async (measurement: Measurement) => {
        await this.dispatch(state.id, { type: 'analysisMeasured', at: this.#now(), runId, measurement });
      },
      onComplete: async (assessment) => {
        if (this.#runs.get(state.id)?.runId === runId) this.#runs.delete(state.id);
        if (assessment.phase === 'Running') return;
        await this.dispatch(state.id, { type: 'analysisCompleted', at: this.#now(), runId, phase: assessment.phase, message: assessment.message });
      },
      onError: (error) => this.#resumeLater(state.id, `analysis ${runId}`, error),
    });
    this.#runs.set(state.id, { runId, run });
    run.start();
  }

  async #load(id: string): Promise<RolloutRecord> {
    const record = await this.#o.repository.load(id);
    if (!record) throw new RolloutCommandError(`no rollout with id "${id}"`);
    return record;
  }

  /** Keeps a background task for idle(); its errors were reported where they happened. */
  #track(promise: Promise<unknown>): void {
    const tracked: Promise<unknown> = promise.catch(() => {}).finally(() => this.#idle.delete(tracked));
    this.#idle.add(tracked);
  }

  #now(): number {
    return this.#o.scheduler.now().getTime();
  }

  /**
   * A step in the background failed (most likely the store: a lost connection, a busy database).
   * Nothing of it was committed, so after a pause the rollout is picked up again from its stored
   * state: timers re-armed, the analysis resumed from its stored measurements, pending actions
   * run. Without this one failed commit would leave a rollout waiting for ever.
   */
  #resumeLater(id: string, what: string, error: unknown): void {
    this.#report(id, what, error);
    const key = `${id}/resume`;
    if (this.#stopped || this.#retries.has(key)) return;
    const cancel = this.#o.scheduler.schedule(this.#o.actionRetryMs ?? 5000, () => {
      this.#retries.delete(key);
      this.#track(this.#resume(id).catch((failure) => this.#resumeLater(id, 'resuming the rollout', failure)));
    });
    this.#retries.set(key, cancel);
  }

  async #resume(id: string): Promise<void> {
    if (this.#stopped) return;
    const { state } = await this.#load(id);
    const running = this.#runs.get(id);
    if (running) {
      running.run.stop(); // restarted below from what is stored, which is what counts
      this.#runs.delete(id);
    }
    this.#wakers.get(id)?.cancel();
    this.#wakers.delete(id);
    this.#pickUp(state);
  }

  /**
   * The rollout's actions whose last attempt failed and that wait out their backoff timer now. Not
   * one whose retry is running (its timer fired: on its way to the devices again), nor one about to
   * run (its timer fired, the drain has not started it yet): a rollback again leaves their devices alone.
   */
  #stalledActions(id: string): string[] {
    const prefix = `${id}/`;
    return [...this.#failures.keys()]
      .filter((key) => key.startsWith(prefix) && this.#retries.has(key) && !this.#inFlight.has(key))
      .map((key) => key.slice(prefix.length));
  }

  /**
   * An operator's rollback: the rollout's actions waiting out a failure backoff (up to
   * MAX_ACTION_RETRY_MS after a long outage of the store or the fleet) run again now, and a new
   * failure starts its backoff over from actionRetryMs.
   */
  #retryNow(id: string): void {
    if (this.#stopped) return;
    let cancelled = 0;
    for (const action of this.#stalledActions(id)) {
      const key = `${id}/${action}`;
      this.#failures.set(key, 0);
      const cancel = this.#retries.get(key);
      if (!cancel) continue;
      cancel();
      this.#retries.delete(key);
      cancelled++;
    }
    if (cancelled > 0) this.#drain(id);
  }

  /** How many of the rollout's actions failed their last attempt and wait for a retry, as a metric (a stuck revert shows). */
  #showFailing(id: string): void {
    if (this.#stopped) return;
    let failing = 0;
    for (const key of this.#failures.keys()) if (key.startsWith(`${id}/`)) failing++;
    this.#o.metrics?.setFailingActions(id, failing);
  }

  #report(id: string, what: string, error: unknown): void {
    this.#o.logger?.error({ rollout: id, err: error }, `${what} failed: ${errorMessage(error)}`);
  }
}

/** The distinct baselines (versions run when the rollout started) of `devices`. */
function baselineVersionsOf(state: RolloutState, devices: readonly string[]): string[] {
  const wanted = new Set(devices);
  return [...new Set(state.devices.filter((device) => wanted.has(device.id) && device.baseline !== null).map((device) => device.baseline!))];
}
