import { validateRolloutSpec, type RolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { next, startRollout } from '../../server/rollout/rollout-state-machine.ts';
import type { DecisionLogEntry, RolloutAction, RolloutEvent, RolloutState } from '../../server/rollout/rollout-state.ts';

export const T0 = Date.UTC(2026, 0, 1);

export function fleetOf(count: number, labels: (i: number) => Record<string, string> = () => ({})) {
  return Array.from({ length: count }, (_, i) => ({ id: `dev-${String(i + 1).padStart(2, '0')}`, labels: { site: 'north', ...labels(i) }, baseline: i % 5 === 0 ? '0.9' : '1' }));
}

const relaxedMetric = { name: 'accuracy', provider: { builtin: { query: 'acc' } }, successCondition: 'result[0] >= 0.9' };

export function specOf(steps: unknown[], extra: Record<string, unknown> = {}): RolloutSpec {
  return validateRolloutSpec({ model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps, ...extra });
}

export const analysisStep = (metric: Record<string, unknown> = relaxedMetric) => ({ analysis: { metrics: [metric] } });

/** The canonical rollout: 5% pilot → 25% → 50% → 100%, with an analysis after each. */
export const STAGED_STEPS = [{ setWeight: 5 }, analysisStep(), { setWeight: 25 }, analysisStep(), { setWeight: 50 }, analysisStep(), { setWeight: 100 }];

/** Drives the pure reducer by hand, collecting every action and decision. */
export class ReducerHarness {
  state: RolloutState;
  readonly actions: RolloutAction[] = [];
  readonly decisions: DecisionLogEntry[] = [];
  at = T0;

  constructor(spec: RolloutSpec, devices = fleetOf(20), previousProduction: string | null = '1', id = 'ro-test') {
    const t = startRollout(id, spec, { type: 'start', at: this.at, by: 'alice', devices, previousProduction });
    this.state = t.state;
    this.actions.push(...t.actions);
    this.decisions.push(...t.decisions);
  }

  send(event: RolloutEvent): RolloutAction[] {
    const t = next(this.state, event);
    this.state = t.state;
    this.actions.push(...t.actions);
    this.decisions.push(...t.decisions);
    return [...t.actions];
  }

  /** Answers the newest action of this kind, every device delivered unless told otherwise. */
  deliver(action: RolloutAction, outcome: (deviceId: string) => 'delivered' | 'offline' | 'refused' = () => 'delivered'): RolloutAction[] {
    const devices = action.kind === 'assign' ? action.devices : action.kind === 'revert' ? action.devices.map((d) => d.deviceId) : [];
    return this.send({ type: 'actionResult', at: this.at, actionId: action.id, devices: devices.map((deviceId) => ({ deviceId, outcome: outcome(deviceId) })) });
  }

  last<K extends RolloutAction['kind']>(kind: K): Extract<RolloutAction, { kind: K }> {
    const found = [...this.actions].reverse().find((action) => action.kind === kind);
    if (!found) throw new Error(`no ${kind} action`);
    return found as Extract<RolloutAction, { kind: K }>;
  }

  completeAnalysis(phase: 'Successful' | 'Failed' | 'Inconclusive' | 'Error', message: string = phase): RolloutAction[] {
    return this.send({ type: 'analysisCompleted', at: this.at, runId: this.state.analysis!.runId, phase, message });
  }

  tick(ms: number): RolloutAction[] {
    this.at += ms;
    return this.send({ type: 'tick', at: this.at });
  }
}
