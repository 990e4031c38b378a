import { z } from 'zod';
import type { RolloutRecord } from './rollout-repository.ts';
import { ACTIVATE_EVERYWHERE, FULL_PROMOTION, describeStep, devicesNotBack, isTerminal, weight } from './rollout-state-machine.ts';
import type { DecisionLogEntry, RolloutState } from './rollout-state.ts';

/**
 * How the APIs show a rollout: a summary for lists and watch lines, and the detail view
 * (per-step progress, device counts, the decision log, analysis values over time).
 */
export const RolloutSummarySchema = z.strictObject({
  id: z.string(),
  model: z.string(),
  candidateVersion: z.string(),
  previousProduction: z.string().nullable(),
  phase: z.enum(['Progressing', 'Paused', 'Completed', 'Failed', 'Aborted', 'RolledBack']),
  terminal: z.boolean(),
  stepIndex: z.number().int(),
  stepCount: z.number().int(),
  stepStage: z.string(),
  currentStep: z.string().nullable(),
  weight: z.number(),
  devices: z.strictObject({ total: z.number().int(), candidate: z.number().int(), delivered: z.number().int(), pending: z.number().int(), retrying: z.number().int(), unreachable: z.number().int(), refused: z.number().int(), reassigned: z.number().int() }),
  pause: z.strictObject({ reason: z.string(), since: z.string(), until: z.string().nullable(), message: z.string() }).nullable(),
  outcome: z.strictObject({ status: z.string(), reason: z.string(), at: z.string() }).nullable(),
  revision: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type RolloutSummary = z.infer<typeof RolloutSummarySchema>;

const StepViewSchema = z.strictObject({
  index: z.number().int(),
  kind: z.string(),
  description: z.string(),
  /** `skipped`: passed over by a promotion (`promote` skips every remaining step, `promote --step` the current one); its analysis, if any, never passed. */
  status: z.enum(['done', 'skipped', 'current', 'pending', 'stopped']),
  measurements: z.number().int(),
});

const PointSchema = z.strictObject({
  at: z.string(),
  stepIndex: z.number().int(),
  index: z.number().int(),
  phase: z.string(),
  value: z.array(z.number()).nullable(),
  baseline: z.array(z.number()).nullable(),
  successThreshold: z.number().nullable(),
  failureThreshold: z.number().nullable(),
});

export const RolloutDetailSchema = RolloutSummarySchema.extend({
  steps: z.array(StepViewSchema),
  analysis: z.strictObject({ runId: z.string(), stepIndex: z.number().int(), phase: z.string(), startedAt: z.string(), message: z.string().nullable() }).nullable(),
  deviceStates: z.array(
    z.strictObject({
      id: z.string(),
      desired: z.string(),
      delivery: z.string(),
      attempts: z.number().int(),
      baseline: z.string().nullable(),
      reason: z.string().nullable(),
      /** Not a target: the rollback of the promoted rollout took it back (it ran the candidate), to `baseline`, the restored production. */
      outside: z.boolean(),
      /** Given another assignment meanwhile (delivery refused, which the device did not): the rollout left it alone. */
      reassigned: z.boolean(),
    }),
  ),
  pendingActions: z.array(z.strictObject({ id: z.string(), kind: z.string() })),
  /** Devices of a rolled-back, failed or aborted rollout not back on their baseline yet (being reverted, refused it, unreachable; not those that left the fleet), for which another rollback may send it again; the dashboard's Roll back stays on while there are any (see devicesNotBack). */
  notBackOnBaseline: z.number().int(),
  /** Why the server would refuse to roll this rollout back now (a newer rollout of the model promoted or is under way: rolling this one back would undo it); null when it would not. */
  rollbackRefused: z.string().nullable(),
  /** What a rollback now would warn of (a version it restores that is retired, failed or rolled back in the registry now); empty when it would be refused. */
  rollbackWarnings: z.array(z.string()),
  /** The warnings about the spec given when it started (its `warning` decisions): analysis that cannot decide anything. */
  warnings: z.array(z.string()),
  decisions: z.array(z.record(z.string(), z.unknown())),
  analysisSeries: z.record(z.string(), z.array(PointSchema)),
  spec: z.record(z.string(), z.unknown()),
});
export type RolloutDetail = z.infer<typeof RolloutDetailSchema>;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Past its steps and not done with the activation everywhere: activating, or ended there (failed,
 * aborted or rolled back during it). A rollout rolled back after it promoted (Completed, then
 * RolledBack) finished that step: no current step. States stored before promotedAt was kept tell
 * the two apart by their decisions only, and read as ended there.
 */
function activatingEverywhere(s: RolloutState): boolean {
  return s.stepIndex >= s.spec.steps.length && s.phase !== 'Completed' && s.promotedAt === undefined;
}

export function rolloutSummary(record: RolloutRecord): RolloutSummary {
  const s = record.state;
  const count = (delivery: string) => s.devices.filter((device) => device.delivery === delivery).length;
  const step = s.spec.steps[s.stepIndex];
  return {
    id: s.id,
    model: s.spec.model,
    candidateVersion: s.spec.candidateVersion,
    previousProduction: s.previousProduction,
    phase: s.phase,
    terminal: isTerminal(s),
    stepIndex: s.stepIndex,
    stepCount: s.spec.steps.length,
    stepStage: s.stepStage,
    currentStep: step ? describeStep(step) : activatingEverywhere(s) ? ACTIVATE_EVERYWHERE : null,
    weight: weight(s),
    devices: {
      total: s.devices.length,
      candidate: s.devices.filter((device) => device.desired !== 'baseline').length,
      delivered: count('delivered'),
      pending: count('pending'),
      retrying: count('retrying'),
      unreachable: count('unreachable'),
      // A device given another assignment meanwhile (superseded) refused nothing: counted apart.
      refused: s.devices.filter((device) => device.delivery === 'refused' && !device.reassigned).length,
      // The flag outlives the state it explains (a failed rollout's revert sends the device its baseline again): counted while it stands.
      reassigned: s.devices.filter((device) => device.delivery === 'refused' && device.reassigned).length,
    },
    pause: s.pause ? { reason: s.pause.reason, since: iso(s.pause.since), until: s.pause.until === undefined ? null : iso(s.pause.until), message: s.pause.message } : null,
    outcome: s.outcome ? { status: s.outcome.status, reason: s.outcome.reason, at: iso(s.outcome.at) } : null,
    revision: record.revision,
    createdAt: iso(s.createdAt),
    updatedAt: iso(s.updatedAt),
  };
}

/** Device states a rollout detail lists by default (the summary's `devices` counts every one). */
export const DETAIL_DEVICE_STATES = 1000;

/** Devices that need a look first: refused, unreachable, retrying, pending; then the rest, in cohort order. */
const ATTENTION: Record<string, number> = { refused: 0, unreachable: 1, retrying: 2, pending: 3 };

export function rolloutDetail(record: RolloutRecord, decisions: readonly DecisionLogEntry[], maxDeviceStates = DETAIL_DEVICE_STATES, rollbackRefused: string | null = null, rollbackWarnings: readonly string[] = []): RolloutDetail {
  const s = record.state;
  const listed = s.devices
    .map((device, order) => ({ device, order }))
    .sort((a, b) => (ATTENTION[a.device.delivery] ?? 9) - (ATTENTION[b.device.delivery] ?? 9) || a.order - b.order)
    .slice(0, maxDeviceStates)
    .map(({ device }) => device);
  const skipped = skippedSteps(decisions, s.spec.steps.length);
  return {
    ...rolloutSummary(record),
    steps: s.spec.steps.map((step, index) => ({
      index,
      kind: step.kind,
      description: describeStep(step),
      status: skipped.has(index) ? 'skipped' : stepStatus(s, index),
      measurements: decisions.filter((decision) => decision.stepIndex === index && decision.measurement).length,
    })),
    analysis: s.analysis ? { runId: s.analysis.runId, stepIndex: s.analysis.stepIndex, phase: s.analysis.phase, startedAt: iso(s.analysis.startedAt), message: s.analysis.message ?? null } : null,
    deviceStates: listed.map((device) => ({ id: device.id, desired: device.desired, delivery: device.delivery, attempts: device.attempts, baseline: device.baseline, reason: device.reason ?? null, outside: device.outside === true, reassigned: device.delivery === 'refused' && device.reassigned === true })),
    pendingActions: record.pendingActions.map((action) => ({ id: action.id, kind: action.kind })),
    notBackOnBaseline: devicesNotBack(s).length,
    rollbackRefused,
    rollbackWarnings: [...rollbackWarnings],
    warnings: decisions.filter((decision) => decision.kind === 'warning').map((decision) => decision.message),
    decisions: decisions.map((decision) => ({ ...decision, at: iso(decision.at) }) as Record<string, unknown>),
    analysisSeries: analysisSeries(decisions),
    spec: s.spec as unknown as Record<string, unknown>,
  };
}

/**
 * The steps an operator's promotion passed over, from the decision log: a full promotion at step
 * k skips k and every step after it, `promote --step` skips k alone (its message says which).
 */
function skippedSteps(decisions: readonly DecisionLogEntry[], stepCount: number): Set<number> {
  const skipped = new Set<number>();
  for (const decision of decisions) {
    if (decision.kind !== 'command' || decision.verdict !== 'promoted' || decision.stepIndex >= stepCount) continue;
    const end = decision.message.startsWith(`${FULL_PROMOTION} `) ? stepCount : decision.stepIndex + 1;
    for (let index = decision.stepIndex; index < end; index++) skipped.add(index);
  }
  return skipped;
}

function stepStatus(s: RolloutState, index: number): 'done' | 'current' | 'pending' | 'stopped' {
  if (s.phase === 'Completed' || index < s.stepIndex) return 'done';
  if (index > s.stepIndex) return 'pending';
  return isTerminal(s) ? 'stopped' : 'current';
}

/** Each analysis metric's measurements in time order: the values behind every verdict. */
export function analysisSeries(decisions: readonly DecisionLogEntry[]): RolloutDetail['analysisSeries'] {
  const series: RolloutDetail['analysisSeries'] = {};
  for (const decision of decisions) {
    const m = decision.measurement;
    if (!m) continue;
    (series[m.metric] ??= []).push({
      at: m.finishedAt,
      stepIndex: decision.stepIndex,
      index: m.index,
      phase: m.phase,
      value: m.value === null ? null : [...m.value],
      baseline: m.baseline ? [...m.baseline] : null,
      successThreshold: m.thresholds.success ?? null,
      failureThreshold: m.thresholds.failure ?? null,
    });
  }
  return series;
}
