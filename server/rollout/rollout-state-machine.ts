import { UserError } from '../../shared/util/errors.ts';
import { formatDuration } from '../../shared/util/duration.ts';
import { describeSelector, selectorMatches } from './label-selector.ts';
import { cohortOrder, growCohort } from './cohort-selection.ts';
import type { RolloutSpec, RolloutStep } from './rollout-spec.ts';
import {
  TERMINAL_PHASES,
  type DecisionKind,
  type DecisionLogEntry,
  type DesiredModel,
  type DeviceReturn,
  type DeviceState,
  type LateAnswer,
  type PauseReason,
  type RolloutAction,
  type RolloutEvent,
  type RolloutState,
  type Transition,
} from './rollout-state.ts';
import type { Measurement } from '../analysis/measurement.ts';

/**
 * The rollout state machine: a pure reducer. `startRollout` makes the initial state from the
 * target devices; `next(state, event)` returns the new state, the actions to execute, and the
 * decisions to log. It reads no clock (events carry `at`) and does no I/O, so replaying the
 * same events gives the same result; actions carry ids derived from the state's counter, so the
 * executor can tell an action it already did.
 *
 * Life of a rollout: each step assigns the candidate to more devices (setWeight, devices,
 * selector), pauses, or runs an analysis. Assignments wait until every device has it or timed
 * out into "unreachable" (offline devices are retried with exponential backoff). A Successful
 * analysis moves on; Failed or Error reverts every device the rollout touched to its baseline
 * and marks the candidate failed; Inconclusive pauses for a human and never promotes. After
 * the last step the candidate is activated on every device and marked production.
 */
export class RolloutCommandError extends UserError {
  constructor(message: string) {
    super(message, { exitCode: 2 });
    this.name = 'RolloutCommandError';
  }
}

/**
 * The rollback of a promoted rollout was sent without the devices that run its candidate (the
 * rollout was promoted after the sender looked): the sender lists them and sends it again.
 */
export class FleetListNeeded extends Error {
  constructor(rolloutId: string) {
    super(`rollout ${rolloutId} is promoted: its rollback needs the devices that run its candidate`);
    this.name = 'FleetListNeeded';
  }
}

type Draft = { -readonly [K in keyof RolloutState]: RolloutState[K] } & { devices: DeviceState[]; cohort: string[] };

type ActionInput = RolloutAction extends infer A ? (A extends RolloutAction ? Omit<A, 'id'> : never) : never;

/** One transition being built: the draft state, and the actions and decisions it produces. */
class TransitionDraft {
  readonly actions: RolloutAction[] = [];
  readonly decisions: DecisionLogEntry[] = [];
  constructor(readonly s: Draft, readonly at: number) {}

  nextId(prefix: 'a' | 'd'): string {
    this.s.seq += 1;
    return `${this.s.id}-${prefix}${this.s.seq}`;
  }

  action(action: ActionInput): string {
    const id = this.nextId('a');
    this.actions.push({ ...action, id } as RolloutAction);
    return id;
  }

  decide(kind: DecisionKind, verdict: string, message: string, extra: { measurement?: Measurement; by?: string } = {}): void {
    this.decisions.push({ id: this.nextId('d'), rolloutId: this.s.id, at: this.at, kind, stepIndex: this.s.stepIndex, verdict, message, ...extra });
  }

  /** Position of each device in s.devices (the list never changes order; only addDevices lengthens it). */
  #index: Map<string, number> | undefined;

  #indexOf(id: string): number | undefined {
    this.#index ??= new Map(this.s.devices.map((device, i) => [device.id, i]));
    return this.#index.get(id);
  }

  has(id: string): boolean {
    return this.#indexOf(id) !== undefined;
  }

  device(id: string): DeviceState {
    const i = this.#indexOf(id);
    if (i === undefined) throw new Error(`device ${id} is not part of rollout ${this.s.id}`);
    return this.s.devices[i]!;
  }

  /** Appends devices not in the rollout yet. */
  addDevices(devices: readonly DeviceState[]): void {
    for (const device of devices) {
      if (this.has(device.id)) continue;
      this.#index!.set(device.id, this.s.devices.length);
      this.s.devices.push(device);
    }
  }

  /** Replaces the device's entry (a new object: one read before the change keeps the old values); O(1). */
  setDevice(id: string, change: Partial<DeviceState>): void {
    const i = this.#indexOf(id);
    if (i === undefined) return;
    this.s.devices[i] = { ...this.s.devices[i]!, ...change };
  }
}

export function startRollout(id: string, spec: RolloutSpec, event: Extract<RolloutEvent, { type: 'start' }>): Transition {
  if (!/^[A-Za-z0-9_-]{4,40}$/.test(id)) throw new RolloutCommandError(`rollout id "${id}": must be 4-40 characters of A-Z a-z 0-9 _ -`);
  // A rollout replaces a model's version: only devices running the model are targets. A device
  // without it (no model yet, or another model) has no baseline to go back to, so a failure or a
  // rollback could not restore what it ran; it gets a first version with `fleetprune assign`.
  const matching = event.devices.filter((device) => selectorMatches(spec.target, device.labels));
  const targets = matching.filter((device) => device.baseline !== null);
  if (targets.length === 0) {
    const without = matching.length > 0 ? `; ${matching.length} matching device${matching.length === 1 ? ' does' : 's do'} not run it (give a device its first version with fleetprune assign)` : '';
    throw new RolloutCommandError(`target: no device running ${spec.model} matches ${describeSelector(spec.target)}${without}`);
  }
  // A target whose baseline (what it runs, or the active assignment retained for it) is the
  // candidate has nothing to weigh it against, and refuses it ("already the active model"): the
  // rollout failed, and marked the version running there failed.
  const running = targets.filter((device) => device.baseline === spec.candidateVersion);
  if (running.length > 0) {
    const named = running.slice(0, 5).map((device) => device.id).join(', ') + (running.length > 5 ? `, … (${running.length - 5} more)` : '');
    throw new RolloutCommandError(
      `target: ${spec.model} ${spec.candidateVersion} is already the active model (run or assigned) of ${running.length} of the ${targets.length} target device${targets.length === 1 ? '' : 's'} (${named}): ` +
        'target only devices that run another version, or assign those another version first',
    );
  }
  const skipped = matching.length - targets.length;
  const byId = new Map(targets.map((device) => [device.id, device]));
  spec.steps.forEach((step, index) => {
    if (step.kind === 'devices') {
      step.deviceIds.forEach((deviceId, at) => {
        if (byId.has(deviceId)) return;
        // Why not: the operator named it, so it exists to them.
        const listed = event.devices.find((device) => device.id === deviceId);
        const why = !listed
          ? 'no live device has that id'
          : !selectorMatches(spec.target, listed.labels)
            ? `it does not match the target ${describeSelector(spec.target)}`
            : `it runs no registered version of ${spec.model} (another model, none yet, or a version the registry does not hold; give it one with fleetprune assign)`;
        throw new RolloutCommandError(`steps[${index}].devices[${at}]: device "${deviceId}" is not a target device: ${why}`);
      });
    }
    if (step.kind === 'selector' && !targets.some((device) => selectorMatches(step.selector, device.labels))) {
      throw new RolloutCommandError(`steps[${index}].selector: no target device matches ${describeSelector(step.selector)}`);
    }
  });
  const order = cohortOrder(id, targets.map((device) => device.id));
  const state: Draft = {
    id,
    spec,
    phase: 'Progressing',
    createdAt: event.at,
    updatedAt: event.at,
    stepIndex: 0,
    stepStage: 'done',
    stepStartedAt: event.at,
    analysisRuns: 0,
    devices: order.map((deviceId) => {
      const device = byId.get(deviceId)!;
      return { id: deviceId, labels: { ...device.labels }, baseline: device.baseline, desired: 'baseline', delivery: 'idle', attempts: 0, touched: false };
    }),
    cohort: [],
    previousProduction: event.previousProduction,
    seq: 0,
  };
  const t = new TransitionDraft(state, event.at);
  t.decide('start', 'started', `rollout of ${spec.model} ${spec.candidateVersion} to ${targets.length} device${targets.length === 1 ? '' : 's'} (${unwrapped(describeSelector(spec.target))}) in ${spec.steps.length} step${spec.steps.length === 1 ? '' : 's'}, started by ${event.by}; previous production ${event.previousProduction ?? 'none'}${skipped > 0 ? `; ${skipped} matching device${skipped === 1 ? '' : 's'} left out: not running ${spec.model}` : ''}`, { by: event.by });
  // Stored with the start itself (one create), so a rollout never exists without its warnings.
  for (const warning of event.warnings ?? []) t.decide('warning', 'warning', warning);
  enterStep(t, 0);
  return finish(t);
}

export function next(state: RolloutState, event: RolloutEvent): Transition {
  if (event.type === 'start') throw new RolloutCommandError(`rollout ${state.id} has already started`);
  const draft = structuredClone(state) as Draft;
  const t = new TransitionDraft(draft, event.at);
  switch (event.type) {
    case 'actionResult':
    case 'actionProgress':
      onActionResult(t, event);
      break;
    case 'analysisMeasured':
      onMeasured(t, event);
      break;
    case 'analysisCompleted':
      onAnalysisCompleted(t, event);
      break;
    case 'tick':
      onTick(t);
      break;
    case 'deviceOnline':
      onDeviceOnline(t, event.deviceId, event.cause ?? 'online');
      break;
    case 'lateAnswer':
      onLateAnswer(t, event);
      break;
    case 'benchmarkFailed':
      onBenchmarkFailed(t, event);
      break;
    case 'pause':
      onPause(t, event.by);
      break;
    case 'resume':
      onResume(t, event.by, event.pausedSince);
      break;
    case 'promote':
      onPromote(t, event.by, event.full, event.fromStep);
      break;
    case 'abort':
      requireActive(draft, 'abort');
      fail(t, 'Aborted', `aborted by ${event.by}${event.reason ? `: ${event.reason}` : ''}`, event.by);
      break;
    case 'rollback':
      onRollback(t, event);
      break;
  }
  return finish(t);
}

function finish(t: TransitionDraft): Transition {
  if (t.actions.length > 0 || t.decisions.length > 0) t.s.updatedAt = t.at;
  return { state: t.s, actions: t.actions, decisions: t.decisions };
}

export function isTerminal(state: RolloutState): boolean {
  return TERMINAL_PHASES.includes(state.phase);
}

function requireActive(state: RolloutState, command: string): void {
  if (isTerminal(state)) throw new RolloutCommandError(`cannot ${command} rollout ${state.id}: it is ${state.phase}`);
}

// ---- steps -------------------------------------------------------------------------------

function enterStep(t: TransitionDraft, index: number): void {
  const s = t.s;
  s.stepIndex = index;
  s.stepStartedAt = t.at;
  delete s.pause;
  const spec = s.spec;
  if (index >= spec.steps.length) {
    activateEverywhere(t);
    return;
  }
  const current = spec.steps[index]!;
  t.decide('step', 'started', `step ${index + 1}/${spec.steps.length}: ${describeStep(current)}`);
  switch (current.kind) {
    case 'setWeight':
    case 'devices':
    case 'selector': {
      const grown = growFor(s, current);
      const before = new Set(s.cohort);
      const added = grown.filter((id) => !before.has(id));
      s.cohort = grown;
      if (added.length === 0) {
        t.decide('assignment', 'unchanged', `cohort already holds ${s.cohort.length}/${s.devices.length} devices`);
        completeStep(t);
        return;
      }
      s.stepStage = 'assigning';
      delete s.analysis;
      const actionId = t.action({ kind: 'assign', role: 'candidate', model: spec.model, version: spec.candidateVersion, devices: added });
      for (const id of added) t.setDevice(id, { desired: 'candidate', delivery: 'pending', attempts: 1, touched: true, actionId });
      t.decide('assignment', 'assigning', `assigning ${spec.candidateVersion} as candidate to ${added.length} device${added.length === 1 ? '' : 's'} (cohort ${s.cohort.length}/${s.devices.length}, ${weight(s)}%): ${listIds(added)}`);
      return;
    }
    case 'pause':
      s.stepStage = 'pausing';
      if (current.durationMs === undefined) {
        pauseFor(t, 'step', `step ${index + 1} pauses until resumed`);
      } else {
        pauseFor(t, 'step', `step ${index + 1} pauses for ${formatDuration(current.durationMs)}`, t.at + current.durationMs);
      }
      return;
    case 'analysis':
      startAnalysis(t);
      return;
  }
}

function growFor(s: Draft, current: Extract<RolloutStep, { kind: 'setWeight' | 'devices' | 'selector' }>): string[] {
  return grownCohort(s.devices, s.cohort, current);
}

/** The cohort after a step that grows it: `devices` in the rollout's order, `current` the cohort before. */
export function grownCohort(
  devices: readonly { readonly id: string; readonly labels: Readonly<Record<string, string>> }[],
  current: readonly string[],
  step: Extract<RolloutStep, { kind: 'setWeight' | 'devices' | 'selector' }>,
): string[] {
  const order = devices.map((device) => device.id);
  if (step.kind === 'setWeight') return growCohort(order, current, step.percent);
  const cohort = [...current];
  const wanted = step.kind === 'devices'
    ? step.deviceIds
    : devices.filter((device) => selectorMatches(step.selector, device.labels)).map((device) => device.id);
  const present = new Set(cohort);
  for (const id of wanted) {
    if (present.has(id)) continue;
    present.add(id);
    cohort.push(id);
  }
  return cohort;
}

function completeStep(t: TransitionDraft): void {
  t.s.stepStage = 'done';
  if (t.s.stepIndex < t.s.spec.steps.length) t.decide('step', 'completed', `step ${t.s.stepIndex + 1} completed`);
  enterStep(t, t.s.stepIndex + 1);
}

function activateEverywhere(t: TransitionDraft): void {
  const s = t.s;
  s.stepIndex = s.spec.steps.length;
  s.stepStage = 'activating';
  s.cohort = s.devices.map((device) => device.id);
  delete s.analysis;
  const actionId = t.action({ kind: 'assign', role: 'active', model: s.spec.model, version: s.spec.candidateVersion, devices: s.cohort });
  for (const device of s.devices) t.setDevice(device.id, { desired: 'active', delivery: 'pending', attempts: firstAttempt(s, device), touched: true, actionId });
  t.decide('promotion', 'activating', `activating ${s.spec.candidateVersion} on ${s.devices.length === 1 ? 'its one device' : `all ${s.devices.length} devices`}`);
}

function completeRollout(t: TransitionDraft): void {
  const s = t.s;
  const refused = s.devices.filter((device) => device.delivery === 'refused');
  // A device that left the fleet (revoked) counts as unreachable, but it never comes back to converge.
  const unreachable = s.devices.filter((device) => device.delivery === 'unreachable' && !device.left).length;
  const left = s.devices.filter((device) => device.delivery === 'unreachable' && device.left).length;
  s.phase = 'Completed';
  s.stepStage = 'done';
  s.promotedAt = t.at;
  const notes = [
    ...(refused.length ? [`${refused.length} refused and keep their model (${refused[0]!.id}: ${refused[0]!.reason ?? 'no reason given'})`] : []),
    ...(unreachable ? [`${unreachable} unreachable; they converge when back online`] : []),
    ...(left ? [`${left} left the fleet`] : []),
  ];
  // How many run it now, when not all: "promoted to 100% of 700" read as 700 devices on it.
  const running = s.devices.length - refused.length - unreachable - left;
  const reason = `promoted to 100% of ${s.devices.length === 1 ? 'its one device' : `${s.devices.length} devices`}${notes.length ? ` (${running} run it; ${notes.join('; ')})` : ''}`;
  s.outcome = { status: 'production', reason, at: t.at };
  t.action({ kind: 'markVersion', model: s.spec.model, version: s.spec.candidateVersion, status: 'production', reason });
  t.decide('promotion', 'production', `${s.spec.model} ${s.spec.candidateVersion} is production: ${reason}`);
}

/** A description without the parentheses it may come in, for one that goes in parentheses: not "((every device))". */
function unwrapped(text: string): string {
  return text.startsWith('(') && text.endsWith(')') ? text.slice(1, -1) : text;
}

/** Up to 20 device ids, then how many more: a decision message stays readable (and small) for a fleet of thousands. */
export function listIds(ids: readonly string[], shown = 20): string {
  return ids.length <= shown ? ids.join(', ') : `${ids.slice(0, shown).join(', ')} and ${ids.length - shown} more`;
}

/** "2 refused (dev-3: signature does not verify), 1 unreachable" for devices that did not take an assignment. */
function describeMisses(devices: readonly DeviceState[]): string {
  const refused = devices.filter((device) => device.delivery === 'refused');
  const unreachable = devices.length - refused.length;
  const parts: string[] = [];
  if (refused.length > 0) parts.push(`${refused.length} refused (${refused[0]!.id}: ${refused[0]!.reason ?? 'no reason given'})`);
  if (unreachable > 0) parts.push(`${unreachable} unreachable`);
  return parts.join(', ');
}

function pauseFor(t: TransitionDraft, reason: PauseReason, message: string, until?: number): void {
  t.s.phase = 'Paused';
  t.s.pause = { reason, since: t.at, message, ...(until === undefined ? {} : { until }) };
  t.decide('pause', 'paused', message);
}

function startAnalysis(t: TransitionDraft): void {
  const s = t.s;
  s.stepStage = 'analyzing';
  s.phase = 'Progressing';
  delete s.pause;
  s.analysisRuns += 1;
  const runId = `${s.id}-r${s.analysisRuns}`;
  s.analysis = { runId, stepIndex: s.stepIndex, startedAt: t.at, phase: 'Running', measurements: [] };
  t.action({ kind: 'startAnalysis', runId, stepIndex: s.stepIndex });
  t.decide('analysis', 'started', `analysis ${runId} started on ${deliveredCohort(s).length} device${deliveredCohort(s).length === 1 ? '' : 's'} carrying the candidate`);
}

function stopAnalysisIfRunning(t: TransitionDraft): void {
  const analysis = t.s.analysis;
  if (analysis && analysis.phase === 'Running') {
    t.action({ kind: 'stopAnalysis', runId: analysis.runId });
    t.s.analysis = { ...analysis, phase: 'Inconclusive', message: 'stopped' };
  }
}

/** Devices that carry the candidate now (delivered), for analysis. */
export function deliveredCohort(s: RolloutState): string[] {
  const delivered = new Set(s.devices.filter((device) => device.delivery === 'delivered').map((device) => device.id));
  return s.cohort.filter((id) => delivered.has(id));
}

export function weight(s: RolloutState): number {
  if (s.devices.length === 0) return 0;
  const carrying = s.devices.filter((device) => device.desired !== 'baseline').length;
  return Math.round((carrying / s.devices.length) * 1000) / 10;
}

// ---- events ------------------------------------------------------------------------------

function onActionResult(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'actionResult' | 'actionProgress' }>): void {
  const s = t.s;
  const policy = s.spec.offline;
  // Devices that ran out of attempts, one decision per kind of model sent and count of attempts:
  // a line per device buried the log (400 offline devices: 1,200 lines over a rollout and its rollback).
  const unreachable = new Map<string, { desired: DesiredModel; attempts: number; ids: string[] }>();
  for (const result of event.devices ?? []) {
    const device = t.has(result.deviceId) ? t.device(result.deviceId) : undefined;
    // A result for an older action (the device has been sent something newer since) is stale.
    if (!device || device.actionId !== event.actionId || (device.delivery !== 'pending' && device.delivery !== 'retrying')) continue;
    if (result.outcome === 'delivered') {
      t.setDevice(device.id, { delivery: 'delivered', reason: undefined, nextAttemptAt: undefined });
    } else if (result.outcome === 'gone') {
      // Not a verdict on the candidate: the device left the fleet, and with it the rollout.
      t.setDevice(device.id, { delivery: 'unreachable', reason: result.reason ?? 'gone', nextAttemptAt: undefined, left: true });
      // A revert's device that left: nothing goes on, and nothing more is sent to it.
      t.decide('device', 'unreachable', `device ${device.id} left the fleet (${result.reason ?? 'gone'}); ${device.desired === 'baseline' ? 'nothing more is sent to it' : 'the rollout goes on without it'}`);
    } else if (result.outcome === 'superseded') {
      // Nothing was sent: the device had been sent something newer since, which the rollout does not
      // undo (reassigned: not counted as one to send its baseline again). A candidate's still fails
      // the rollout (settle), saying so rather than as a refusal.
      const revert = device.desired === 'baseline';
      t.setDevice(device.id, { delivery: 'refused', reason: result.reason ?? 'superseded', nextAttemptAt: undefined, reassigned: true });
      t.decide(
        'device',
        'superseded',
        revert
          ? `device ${device.id} was not sent its baseline: it has been sent something newer since (an assignment, or another rollout), which this revert does not undo: if it does not run its baseline now (fleetprune devices show ${device.id}), assign it by hand`
          : `device ${device.id} was not sent ${describeDesired(s, device.desired)}: it has been sent something newer since`,
      );
    } else if (result.outcome === 'refused') {
      t.setDevice(device.id, { delivery: 'refused', reason: result.reason ?? 'refused', nextAttemptAt: undefined });
      t.decide('device', 'refused', `device ${device.id} refused ${describeDesired(s, device.desired)}: ${result.reason ?? 'no reason given'}`);
    } else if (device.attempts >= policy.maxAttempts) {
      t.setDevice(device.id, { delivery: 'unreachable', reason: result.reason ?? 'offline', nextAttemptAt: undefined });
      const key = `${device.desired}/${device.attempts}`;
      const group = unreachable.get(key) ?? { desired: device.desired, attempts: device.attempts, ids: [] };
      group.ids.push(device.id);
      unreachable.set(key, group);
    } else {
      const backoff = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (device.attempts - 1));
      t.setDevice(device.id, { delivery: 'retrying', reason: result.reason ?? 'offline', nextAttemptAt: t.at + backoff });
    }
  }
  for (const { desired, attempts, ids } of unreachable.values()) {
    const after = `after ${attempts} attempt${attempts === 1 ? '' : 's'} (${describeDesired(s, desired)})`;
    t.decide(
      'device',
      'unreachable',
      ids.length === 1 ? `device ${ids[0]} is unreachable ${after}; it converges when it comes back` : `${ids.length} devices are unreachable ${after}: ${listIds(ids)}; they converge when they come back`,
    );
  }
  settle(t);
}

/** Moves on when the current stage's deliveries are settled; fails on a refused candidate. */
function settle(t: TransitionDraft): void {
  const s = t.s;
  if (isTerminal(s)) return;
  // Whenever it comes: a device unreachable when its step assigned the candidate answers when it
  // is back, possibly during a later pause or analysis — whose verdict cannot vouch for it either.
  const refused = s.devices.find((device) => device.delivery === 'refused' && device.desired === 'candidate');
  if (refused) {
    // Not a refusal when the device was sent something newer than the candidate meanwhile: said so.
    fail(t, 'Failed', refused.reassigned ? `device ${refused.id} was sent something newer than the candidate since (an assignment, or another rollout)` : `device ${refused.id} refused the candidate: ${refused.reason ?? 'no reason given'}`);
    return;
  }
  if (s.stepStage !== 'assigning' && s.stepStage !== 'activating') return;
  const waiting = s.devices.some((device) => device.delivery === 'pending' || device.delivery === 'retrying');
  if (waiting) return;
  const inCohort = new Set(s.cohort);
  const cohortDevices = s.devices.filter((device) => inCohort.has(device.id));
  if (cohortDevices.every((device) => device.delivery === 'unreachable' || device.delivery === 'refused')) {
    if (s.stepStage === 'assigning') {
      // No evidence against the candidate (offline devices say nothing about it): no failure, and
      // no `failed` mark in the registry. A device that comes back is sent it again.
      const gone = cohortDevices.every((device) => device.left);
      const why = gone
        ? `every device of step ${s.stepIndex + 1}'s cohort left the fleet (${cohortDevices.length}); none can receive the candidate: promote --step goes on without them, rollback reverts`
        : `no device of step ${s.stepIndex + 1}'s cohort received the candidate (${cohortDevices.length} unreachable); the step goes on when one of them has it (each is sent it again when it comes back; resume sends it to them all now, rollback reverts)`;
      if (s.phase !== 'Paused') pauseFor(t, 'unreachable', why);
      // Paused waiting for the cohort when its last device left (revoked meanwhile): no promise any more that one comes back.
      else if (gone && s.pause?.reason === 'unreachable' && s.pause.message !== why) {
        s.pause = { ...s.pause, message: why };
        t.decide('pause', 'paused', why);
      }
      return;
    }
    // Activating everywhere with not one device taking the candidate, and some refusing it, is no
    // promotion: marking it production would leave the fleet on the old model under a version that
    // runs nowhere. Unreachable devices alone are no verdict (they converge when back online).
    if (cohortDevices.some((device) => device.delivery === 'refused')) {
      fail(t, 'Failed', `no device took the candidate when it was activated everywhere (${describeMisses(cohortDevices)})`);
      return;
    }
  }
  if (s.phase === 'Paused' && s.pause?.reason === 'unreachable') {
    s.phase = 'Progressing';
    delete s.pause;
    t.decide('pause', 'resumed', `a device of step ${s.stepIndex + 1}'s cohort has the candidate; the step goes on`);
  }
  if (s.phase === 'Paused') return; // manual pause: resume continues from here
  if (s.stepStage === 'activating') completeRollout(t);
  else completeStep(t);
}

function onMeasured(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'analysisMeasured' }>): void {
  const analysis = t.s.analysis;
  if (!analysis || analysis.runId !== event.runId || analysis.phase !== 'Running') return;
  t.s.analysis = { ...analysis, measurements: [...analysis.measurements, event.measurement] };
  t.decide('measurement', event.measurement.phase, event.measurement.message, { measurement: event.measurement });
}

function onAnalysisCompleted(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'analysisCompleted' }>): void {
  const s = t.s;
  const analysis = s.analysis;
  if (!analysis || analysis.runId !== event.runId || analysis.phase !== 'Running' || isTerminal(s)) return;
  s.analysis = { ...analysis, phase: event.phase, message: event.message };
  t.decide('analysis', event.phase, `analysis ${event.runId}: ${event.phase}: ${event.message}`);
  switch (event.phase) {
    case 'Successful':
      if (s.phase === 'Paused') return;
      completeStep(t);
      return;
    case 'Failed':
      fail(t, 'Failed', `analysis failed at step ${s.stepIndex + 1}: ${event.message}`);
      return;
    case 'Error':
      fail(t, 'Failed', `analysis could not measure at step ${s.stepIndex + 1}: ${event.message}`);
      return;
    case 'Inconclusive':
      pauseFor(t, 'inconclusive', `analysis inconclusive at step ${s.stepIndex + 1}; waiting for a human (resume re-runs the analysis, promote --step skips it, promote skips every remaining step, rollback reverts): ${event.message}`);
      return;
  }
}

function onTick(t: TransitionDraft): void {
  const s = t.s;
  const due = s.devices.filter((device) => device.delivery === 'retrying' && (device.nextAttemptAt ?? 0) <= t.at);
  if (due.length > 0) {
    for (const device of due) t.setDevice(device.id, { delivery: 'pending', attempts: device.attempts + 1, nextAttemptAt: undefined });
    deliver(t, due.map((device) => device.id));
  }
  if (s.phase === 'Paused' && s.pause?.reason === 'step' && s.pause.until !== undefined && s.pause.until <= t.at) {
    s.phase = 'Progressing';
    t.decide('pause', 'resumed', `timed pause of step ${s.stepIndex + 1} is over`);
    completeStep(t);
  }
}

/** Whether the rollout has something to (re)send the device when it comes back online. */
export function awaitsDevice(state: RolloutState, deviceId: string): boolean {
  const device = state.devices.find((entry) => entry.id === deviceId);
  return device !== undefined && waitsForReturn(device);
}

/** Every device the rollout has something to (re)send when it comes back online. */
export function awaitedDevices(state: RolloutState): Set<string> {
  return new Set(state.devices.filter(waitsForReturn).map((device) => device.id));
}

function waitsForReturn(device: DeviceState): boolean {
  return device.touched && (device.delivery === 'unreachable' || device.delivery === 'retrying');
}

function onDeviceOnline(t: TransitionDraft, deviceId: string, cause: DeviceReturn): void {
  if (!awaitsDevice(t.s, deviceId)) return;
  const device = t.device(deviceId);
  t.setDevice(deviceId, { delivery: 'pending', attempts: 1, nextAttemptAt: undefined });
  const desired = describeDesired(t.s, device.desired);
  const back = cause === 'online' ? 'is back' : 'answered an earlier assignment';
  t.decide('device', 'online', cause === 'revoked' ? `device ${deviceId} was revoked (it left the fleet); its delivery of ${desired} is tried once more, to count it gone` : `device ${deviceId} ${back}; sending it ${desired}`);
  deliver(t, [deviceId]);
}

/**
 * Whether a device's answer to `actionId` that no waiting action took is news to this rollout:
 * `actionId` is what the rollout last sent the device (an answer to anything older says nothing
 * about what it wants now), and the rollout still counts the device as pending (its action gave
 * up waiting and is about to record it offline), retrying or unreachable.
 */
export function awaitsLateAnswer(state: RolloutState, answer: LateAnswer): boolean {
  const device = state.devices.find((entry) => entry.id === answer.deviceId);
  if (device === undefined || !device.touched || device.actionId !== answer.actionId || !(device.delivery === 'pending' || waitsForReturn(device))) return false;
  // "No candidate to drop" from a device running something other than its baseline (the
  // candidate, activated as the rollback was decided): the answer to the baseline retained for it decides.
  return answer.runs === undefined || device.baseline === null || (answer.runs.model === state.spec.model && answer.runs.version === device.baseline);
}

function onLateAnswer(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'lateAnswer' }>): void {
  for (const answer of event.devices) {
    if (!awaitsLateAnswer(t.s, answer)) continue;
    const device = t.device(answer.deviceId);
    if (answer.outcome === 'delivered') {
      t.setDevice(device.id, { delivery: 'delivered', reason: undefined, nextAttemptAt: undefined });
      t.decide('device', 'delivered', `device ${device.id} answered late (attempt ${device.attempts}): it has ${describeDesired(t.s, device.desired)}`);
    } else {
      t.setDevice(device.id, { delivery: 'refused', reason: answer.reason ?? 'refused', nextAttemptAt: undefined });
      t.decide('device', 'refused', `device ${device.id} refused ${describeDesired(t.s, device.desired)}: ${answer.reason ?? 'no reason given'}`);
    }
  }
  settle(t);
}

/**
 * Whether a `benchmark-failed` answer from `deviceId` to assignment `actionId` is about this
 * rollout's candidate: the rollout is under way, wants the device to carry the candidate, and sent
 * it that assignment (any of its actions: the answer may come before the delivery is recorded, or
 * after a retry re-sent the candidate under a new id, which the device then does not benchmark again).
 */
export function benchmarksCandidate(state: RolloutState, deviceId: string, actionId: string): boolean {
  const device = state.devices.find((entry) => entry.id === deviceId);
  return !isTerminal(state) && device !== undefined && device.touched && device.desired === 'candidate' && isActionOf(state, actionId);
}

/** Whether `id` is one of this rollout's action ids (`<rollout id>-a<n>`). */
function isActionOf(state: RolloutState, id: string): boolean {
  const prefix = `${state.id}-a`;
  return id.startsWith(prefix) && /^[0-9]+$/.test(id.slice(prefix.length));
}

/**
 * A device could not benchmark the candidate it installed (its holdout does not fit the model, the
 * model gives non-finite outputs): the candidate cannot be vouched for there, so, like a device
 * that refuses it, this fails the rollout. Otherwise the device would silently drop out of the
 * relative checks, which then judge only the devices where the candidate runs.
 *
 * Unless the model that failed was the device's own (`failedRole` `active`: a holdout cell its
 * model reads that is not a number, say): that says nothing of the candidate, which was not even
 * run. The device drops out of the analysis, said in the decision log (too few devices left make
 * the analysis inconclusive, which pauses the rollout), and the rollout goes on.
 */
function onBenchmarkFailed(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'benchmarkFailed' }>): void {
  if (!benchmarksCandidate(t.s, event.deviceId, event.actionId)) return;
  if (event.failedRole === 'active') {
    t.decide(
      'device',
      'no-benchmark',
      `device ${event.deviceId} could not benchmark ${t.s.spec.candidateVersion} beside its active model: ${event.reason}; that says nothing of the candidate (the device's holdout or its own model is at fault): the analysis goes on without this device`,
    );
    return;
  }
  t.setDevice(event.deviceId, { delivery: 'refused', reason: `benchmark failed: ${event.reason}` });
  t.decide('device', 'refused', `device ${event.deviceId} could not benchmark ${t.s.spec.candidateVersion}: ${event.reason}`);
  fail(t, 'Failed', `device ${event.deviceId} could not benchmark the candidate: ${event.reason}`);
}

/** (Re)sends each device its desired model, grouped into one action per kind. */
function deliver(t: TransitionDraft, deviceIds: readonly string[]): void {
  const s = t.s;
  const groups: Record<DesiredModel, string[]> = { baseline: [], candidate: [], active: [] };
  for (const id of deviceIds) groups[t.device(id).desired].push(id);
  const mark = (ids: readonly string[], actionId: string) => {
    for (const id of ids) t.setDevice(id, { actionId });
  };
  if (groups.candidate.length > 0) mark(groups.candidate, t.action({ kind: 'assign', role: 'candidate', model: s.spec.model, version: s.spec.candidateVersion, devices: groups.candidate }));
  if (groups.active.length > 0) mark(groups.active, t.action({ kind: 'assign', role: 'active', model: s.spec.model, version: s.spec.candidateVersion, devices: groups.active }));
  if (groups.baseline.length > 0) {
    mark(groups.baseline, t.action({ kind: 'revert', model: s.spec.model, devices: groups.baseline.map((id) => ({ deviceId: id, version: t.device(id).baseline })) }));
  }
}

// ---- manual commands ---------------------------------------------------------------------

function onPause(t: TransitionDraft, by: string): void {
  const s = t.s;
  requireActive(s, 'pause');
  const current = s.spec.steps[s.stepIndex];
  // A timed pause step: held by the operator from now on, its timer no longer moves the rollout
  // on. stepStartedAt stays, so resume continues the timed pause until it would have ended (the
  // time held counts) or, that time passed, ends the step (see onResume, stage 'pausing').
  if (s.phase === 'Paused' && s.pause?.reason === 'step' && s.pause.until !== undefined && current?.kind === 'pause' && current.durationMs !== undefined) {
    const left = s.pause.until - t.at;
    pauseFor(t, 'manual', `paused by ${by} during step ${s.stepIndex + 1}'s timed pause (${formatDuration(current.durationMs)}, ${left > 0 ? `${formatDuration(left)} left` : 'ending now'}): held until resumed; resume continues the timed pause until ${new Date(s.pause.until).toISOString()}, or ends the step if that has passed`);
    return;
  }
  // Paused only until a device of the cohort comes back: held by the operator from now on.
  if (s.phase === 'Paused' && s.pause?.reason !== 'unreachable') throw new RolloutCommandError(`rollout ${s.id} is already paused (${s.pause?.message ?? ''})`);
  stopAnalysisIfRunning(t);
  pauseFor(t, 'manual', `paused by ${by}`);
}

function onResume(t: TransitionDraft, by: string, pausedSince?: number): void {
  const s = t.s;
  requireActive(s, 'resume');
  if (pausedSince !== undefined && s.pause?.since !== pausedSince) {
    const now = s.phase === 'Paused' && s.pause ? `it is paused since ${new Date(s.pause.since).toISOString()}: ${s.pause.message}` : `it is ${s.phase}, not paused`;
    throw new RolloutCommandError(`rollout ${s.id} is no longer in the pause of ${new Date(pausedSince).toISOString()} (${now}); not resumed again`);
  }
  if (s.phase !== 'Paused' || !s.pause) throw new RolloutCommandError(`rollout ${s.id} is not paused`);
  const reason = s.pause.reason;
  s.phase = 'Progressing';
  delete s.pause;
  t.decide('command', 'resumed', `resumed by ${by}`, { by });
  if (reason === 'step') {
    completeStep(t);
    return;
  }
  // manual or inconclusive: continue the stage that was interrupted.
  switch (s.stepStage) {
    case 'analyzing':
      startAnalysis(t);
      return;
    case 'pausing': {
      const current = s.spec.steps[s.stepIndex];
      if (current?.kind === 'pause' && current.durationMs !== undefined) {
        const until = s.stepStartedAt + current.durationMs;
        if (until > t.at) pauseFor(t, 'step', `step ${s.stepIndex + 1} pauses until ${new Date(until).toISOString()}`, until);
        else completeStep(t);
      } else {
        pauseFor(t, 'step', `step ${s.stepIndex + 1} pauses until resumed`);
      }
      return;
    }
    case 'assigning':
    case 'activating': {
      // Not one device of the cohort has the candidate (paused for that, or held by hand on top):
      // each unreachable one is sent it again now.
      const inCohort = new Set(s.cohort);
      const cohortDevices = s.devices.filter((device) => inCohort.has(device.id));
      if (s.stepStage === 'assigning' && cohortDevices.every((device) => device.delivery === 'unreachable' || device.delivery === 'refused')) {
        const again = cohortDevices.filter((device) => device.delivery === 'unreachable' && !device.left).map((device) => device.id);
        for (const id of again) t.setDevice(id, { delivery: 'pending', attempts: 1, nextAttemptAt: undefined });
        if (again.length > 0) deliver(t, again);
      }
      settle(t);
      return;
    }
    case 'done':
      completeStep(t);
      return;
  }
}

/** How the decision of a full promotion begins (a step promotion's reads `step N skipped by …`): the rollout views tell the two apart by it. */
export const FULL_PROMOTION = 'promoted to 100% by';

function onPromote(t: TransitionDraft, by: string, full: boolean, fromStep?: number): void {
  const s = t.s;
  if (fromStep !== undefined) requireAtStep(s, fromStep);
  requireActive(s, 'promote');
  if (s.stepStage === 'activating') throw new RolloutCommandError(`rollout ${s.id} is already activating the candidate everywhere`);
  stopAnalysisIfRunning(t);
  s.phase = 'Progressing';
  delete s.pause;
  if (full) {
    t.decide('command', 'promoted', `${FULL_PROMOTION} ${by}, skipping the remaining steps and analysis`, { by });
    activateEverywhere(t);
    return;
  }
  t.decide('command', 'promoted', `step ${s.stepIndex + 1} skipped by ${by}`, { by });
  completeStep(t);
}

/**
 * A promotion meant for step `fromStep` (as the operator saw it) of a rollout that has moved on
 * since is refused: a second identical `promote --step` must not skip the next step too.
 */
function requireAtStep(s: RolloutState, fromStep: number): void {
  if (s.stepIndex === fromStep) return;
  const count = s.spec.steps.length;
  const where = isTerminal(s) ? `it is ${s.phase}` : s.stepIndex >= count ? 'it is activating the candidate everywhere' : `it is at step ${s.stepIndex + 1}/${count}`;
  if (s.stepIndex > fromStep) throw new RolloutCommandError(`rollout ${s.id} is already past step ${fromStep + 1} (${where}); not promoted again`);
  if (fromStep >= count) throw new RolloutCommandError(`rollout ${s.id} has no step ${fromStep + 1}: its spec has ${count} step${count === 1 ? '' : 's'} (${where}); not promoted`);
  throw new RolloutCommandError(`rollout ${s.id} is not at step ${fromStep + 1} yet (${where}); not promoted`);
}

function onRollback(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'rollback' }>): void {
  const s = t.s;
  const { by, reason } = event;
  const why = `rolled back by ${by}${reason ? `: ${reason}` : ''}`;
  if (s.phase === 'RolledBack') {
    resendRollback(t, event);
    return;
  }
  if (s.phase === 'Completed') {
    if (event.runningCandidate === undefined && event.fleetUnlisted === undefined) throw new FleetListNeeded(s.id);
    s.rolledBackAt = t.at;
    const outside = event.fleetUnlisted !== undefined
      ? `; the devices outside the rollout could not be listed (${event.fleetUnlisted}): any of them running ${s.spec.candidateVersion} stay on it`
      : takeBackOutside(t, event.runningCandidate ?? []);
    revertAll(t);
    s.phase = 'RolledBack';
    s.outcome = { status: 'rolled-back', reason: why, at: t.at };
    t.action({ kind: 'markVersion', model: s.spec.model, version: s.spec.candidateVersion, status: 'rolled-back', reason: why });
    if (s.previousProduction) {
      t.action({ kind: 'markVersion', model: s.spec.model, version: s.previousProduction, status: 'production', reason: `restored by rollback of rollout ${s.id} (${s.spec.model}@${s.spec.candidateVersion})` });
    }
    t.decide('rollback', 'rolled-back', `${why}; every device goes back to its baseline (previous production ${s.previousProduction ?? 'none'})${outside}`, { by });
    return;
  }
  if (s.phase === 'Failed' || s.phase === 'Aborted') {
    // Already reverting; re-send to every device not yet back (a second "one call" is harmless).
    // With every device back (or gone from the fleet) there is nothing to send: refused, as a
    // rollback of a rolled-back rollout is, and the phase stays what it is.
    const pending = devicesNotBack(s).map((device) => device.id);
    if (pending.length === 0) throw new RolloutCommandError(`rollout ${s.id} is already reverted (${s.phase}): ${everyDeviceBack(s)}; nothing to roll back`);
    for (const id of pending) t.setDevice(id, { delivery: 'pending', attempts: 1, nextAttemptAt: undefined });
    deliver(t, pending);
    s.phase = 'RolledBack';
    t.decide('rollback', 'rolled-back', `${why} (after ${s.outcome?.status ?? 'failure'})`, { by });
    return;
  }
  s.rolledBackAt = t.at;
  fail(t, 'RolledBack', why, by);
}

/**
 * The rollback of a promoted rollout: the devices that run its candidate without being among its
 * targets (given it by hand: most often production after the promotion, to new devices or another
 * site; or pinned to that version before) join the rollout to go back to the production version
 * the rollback restores, or, with no previous production to send them, are named and left as they
 * are. Returns what the rollback's decision adds about them.
 */
function takeBackOutside(t: TransitionDraft, runningCandidate: readonly { id: string; labels: Record<string, string> }[]): string {
  const s = t.s;
  const outside = runningCandidate.filter((device) => !t.has(device.id));
  if (outside.length === 0) return '';
  const ids = listIds(outside.map((device) => device.id));
  const count = `${outside.length} device${outside.length === 1 ? '' : 's'}`;
  const runs = `${outside.length === 1 ? 'runs' : 'run'} ${s.spec.candidateVersion} outside the rollout`;
  if (!s.previousProduction) return `; ${count} that ${runs} ${outside.length === 1 ? 'is' : 'are'} left on it: there is no previous production to send ${outside.length === 1 ? 'it' : 'them'} (${ids})`;
  t.addDevices(outside.map((device) => ({ id: device.id, labels: { ...device.labels }, baseline: s.previousProduction, desired: 'baseline', delivery: 'idle', attempts: 0, touched: true, outside: true })));
  return `; ${count} that ${runs} ${outside.length === 1 ? 'goes' : 'go'} to ${s.previousProduction} too (${ids})`;
}

/**
 * The devices of a rolled-back, failed or aborted rollout that are not back on their baseline:
 * still being reverted (their revert on its way, or waiting for a retry after it failed), refused
 * it, or unreachable. Devices that left the fleet are not counted. A rollback again sends them
 * their baseline (see resendRollback for a rolled-back one); the dashboard's *Roll back* stays on
 * while there are any.
 */
export function devicesNotBack(s: RolloutState): DeviceState[] {
  if (s.phase === 'RolledBack' || s.phase === 'Failed' || s.phase === 'Aborted') return s.devices.filter((device) => device.touched && !device.left && !device.reassigned && device.delivery !== 'delivered');
  return [];
}

/**
 * A rollback of a rolled-back rollout: the devices that are not back on their baseline — they
 * refused it (a download of the baseline failing for a while, a full disk), could not be reached,
 * or their revert failed (the store or the fleet down) and waits for a retry, which may be minutes
 * away after a long outage — are sent it once more, now (one attempt for the unreachable, which
 * converge when back anyway). Devices whose revert is on its way are left alone (two rollbacks
 * clicked at once send every device back once), and so are devices that left the fleet. With no
 * device to send anything, it is refused, and nothing changes.
 */
function resendRollback(t: TransitionDraft, event: Extract<RolloutEvent, { type: 'rollback' }>): void {
  const s = t.s;
  const { by, reason } = event;
  const stalled = new Set(event.stalledActions ?? []);
  const waitsForRetry = (device: DeviceState) => device.delivery === 'pending' && device.actionId !== undefined && stalled.has(device.actionId);
  const notBack = devicesNotBack(s);
  const onItsWay = notBack.filter((device) => device.delivery === 'pending' && !waitsForRetry(device));
  const again = notBack.filter((device) => device.delivery !== 'pending' || waitsForRetry(device));
  if (again.length === 0) {
    if (onItsWay.length > 0) {
      throw new RolloutCommandError(`rollout ${s.id} is already rolled back: its revert is on its way to ${onItsWay.length} device${onItsWay.length === 1 ? '' : 's'} (${listIds(onItsWay.map((device) => device.id))}); nothing to send again`);
    }
    throw new RolloutCommandError(`rollout ${s.id} is already rolled back: ${everyDeviceBack(s)}; nothing to roll back`);
  }
  const retried = again.filter(waitsForRetry).length;
  const refused = again.filter((device) => device.delivery === 'refused').length;
  const unreachable = again.length - retried - refused;
  for (const device of again) t.setDevice(device.id, { desired: 'baseline', delivery: 'pending', attempts: firstAttempt(s, device), nextAttemptAt: undefined, reason: undefined });
  deliver(t, again.map((device) => device.id));
  s.rolledBackAt = t.at;
  const why = [
    ...(retried > 0 ? [`${retried} whose revert failed and was waiting to be retried`] : []),
    ...(refused > 0 ? [`${refused} that refused it`] : []),
    ...(unreachable > 0 ? [`${unreachable} unreachable or offline`] : []),
  ].join(', ');
  const n = again.length;
  t.decide(
    'rollback',
    'rolled-back',
    `rolled back again by ${by}${reason ? ` (${reason})` : ''}: ${n} device${n === 1 ? '' : 's'} not back on ${n === 1 ? 'its' : 'their'} baseline ${n === 1 ? 'is' : 'are'} sent it again (${listIds(again.map((device) => device.id))}): ${why}`,
    { by },
  );
}

/**
 * "every device it touched is back on its baseline", with those that left the fleet, and those sent
 * something newer since (which no rollback undoes), named.
 */
function everyDeviceBack(s: RolloutState): string {
  const left = s.devices.some((device) => device.touched && device.left);
  const reassigned = s.devices.filter((device) => device.touched && device.reassigned && device.delivery !== 'delivered');
  const others = reassigned.length === 0 ? '' : `, but for ${listIds(reassigned.map((device) => device.id))}, sent something newer since, which a rollback does not undo (assign ${reassigned.length === 1 ? 'it its' : 'them their'} baseline by hand)`;
  return `every device it touched is back on its baseline${left ? ' or has left the fleet' : ''}${others}`;
}

/** Reverts every touched device, stops analysis, marks the candidate failed. */
function fail(t: TransitionDraft, phase: 'Failed' | 'Aborted' | 'RolledBack', reason: string, by?: string): void {
  const s = t.s;
  stopAnalysisIfRunning(t);
  revertAll(t);
  s.phase = phase;
  delete s.pause;
  s.stepStage = 'done';
  s.outcome = { status: phase === 'Aborted' ? 'aborted' : phase === 'RolledBack' ? 'rolled-back' : 'failed', reason, at: t.at };
  t.action({ kind: 'markVersion', model: s.spec.model, version: s.spec.candidateVersion, status: 'failed', reason });
  t.decide(phase === 'Failed' ? 'failure' : phase === 'Aborted' ? 'command' : 'rollback', phase === 'Failed' ? 'failed' : phase === 'Aborted' ? 'aborted' : 'rolled-back', `${reason}; reverting ${s.devices.filter((device) => device.touched).length} device(s) to their baseline`, by ? { by } : {});
}

function revertAll(t: TransitionDraft): void {
  const touched = t.s.devices.filter((device) => device.touched);
  for (const device of touched) t.setDevice(device.id, { desired: 'baseline', delivery: 'pending', attempts: firstAttempt(t.s, device), nextAttemptAt: undefined, reason: undefined });
  if (touched.length > 0) deliver(t, touched.map((device) => device.id));
}

/**
 * A device that already timed out into unreachable gets one attempt, not a new round of
 * retries: the same dead device must not delay every later stage. It converges when it
 * comes back (deviceOnline).
 */
function firstAttempt(s: RolloutState, device: DeviceState): number {
  return device.delivery === 'unreachable' ? s.spec.offline.maxAttempts : 1;
}

// ---- descriptions ------------------------------------------------------------------------

/** The current step's description once the steps are done and the candidate is activated everywhere (promoted). */
export const ACTIVATE_EVERYWHERE = 'activate everywhere';

export function describeStep(step: RolloutStep): string {
  switch (step.kind) {
    case 'setWeight': return `set weight ${step.percent}%`;
    case 'devices': return `devices ${listIds(step.deviceIds)}`;
    case 'selector': return `devices matching ${describeSelector(step.selector)}`;
    case 'pause': return step.durationMs === undefined ? 'pause until resumed' : `pause ${formatDuration(step.durationMs)}`;
    case 'analysis': return `analysis of ${step.metrics.map((metric) => metric.name).join(', ')}`;
  }
}

function describeDesired(s: RolloutState, desired: DesiredModel): string {
  if (desired === 'baseline') return 'its baseline';
  return `${s.spec.candidateVersion} as ${desired}`;
}

/** When the controller should next send a tick: the earliest retry or timed-pause end. */
export function nextWakeAt(s: RolloutState): number | undefined {
  const times = s.devices.filter((device) => device.delivery === 'retrying' && device.nextAttemptAt !== undefined).map((device) => device.nextAttemptAt!);
  if (s.phase === 'Paused' && s.pause?.until !== undefined) times.push(s.pause.until);
  // A loop, not Math.min(...times): spreading a large fleet's retries overflows the stack.
  return times.length === 0 ? undefined : times.reduce((a, b) => Math.min(a, b));
}

