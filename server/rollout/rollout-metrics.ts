import { Counter, Gauge, type Registry } from 'prom-client';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DecisionLogEntry, RolloutState } from './rollout-state.ts';
import { weight } from './rollout-state-machine.ts';

/**
 * The rollout controller's metrics, on an injected registry (the server's). Labels: rollout,
 * model, version (the candidate), and metric / verdict / kind where they apply.
 */
export class RolloutMetrics {
  readonly step: Gauge<'rollout' | 'model' | 'version'>;
  readonly weight: Gauge<'rollout' | 'model' | 'version'>;
  readonly unreachable: Gauge<'rollout' | 'model' | 'version'>;
  readonly analysisValue: Gauge<'rollout' | 'model' | 'version' | 'metric'>;
  readonly analysisThreshold: Gauge<'rollout' | 'model' | 'version' | 'metric' | 'condition'>;
  readonly decisions: Counter<'rollout' | 'model' | 'version' | 'kind' | 'metric' | 'verdict'>;

  constructor(registry: Registry) {
    const base = ['rollout', 'model', 'version'] as const;
    this.step = new Gauge({ name: ROLLOUT_METRICS.step, help: 'Index of the step the rollout is on (the number of steps once activating everywhere)', labelNames: base, registers: [registry] });
    this.weight = new Gauge({ name: ROLLOUT_METRICS.weight, help: 'Percent of the rollout target devices given the candidate', labelNames: base, registers: [registry] });
    this.unreachable = new Gauge({ name: ROLLOUT_METRICS.unreachableDevices, help: 'Devices of the rollout that timed out into unreachable', labelNames: base, registers: [registry] });
    this.analysisValue = new Gauge({ name: ROLLOUT_METRICS.analysisValue, help: 'Last measured value of an analysis metric (median of a vector)', labelNames: [...base, 'metric'], registers: [registry] });
    this.analysisThreshold = new Gauge({ name: ROLLOUT_METRICS.analysisThreshold, help: 'Threshold the last value of an analysis metric was compared with', labelNames: [...base, 'metric', 'condition'], registers: [registry] });
    this.decisions = new Counter({ name: ROLLOUT_METRICS.decisions, help: 'Rollout decisions (measurements, steps, promotions, failures, commands) by verdict', labelNames: [...base, 'kind', 'metric', 'verdict'], registers: [registry] });
  }

  observe(state: RolloutState, decisions: readonly DecisionLogEntry[]): void {
    const labels = { rollout: state.id, model: state.spec.model, version: state.spec.candidateVersion };
    this.step.set(labels, state.stepIndex);
    this.weight.set(labels, weight(state));
    this.unreachable.set(labels, state.devices.filter((device) => device.delivery === 'unreachable').length);
    for (const decision of decisions) {
      const measurement = decision.measurement;
      this.decisions.inc({ ...labels, kind: decision.kind, metric: measurement?.metric ?? '', verdict: decision.verdict });
      if (!measurement) continue;
      const values = measurement.value ?? [];
      if (values.length > 0) {
        const sorted = [...values].sort((a, b) => a - b);
        const middle = sorted.length >> 1;
        const value = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
        this.analysisValue.set({ ...labels, metric: measurement.metric }, value);
      }
      if (measurement.thresholds.success !== undefined) this.analysisThreshold.set({ ...labels, metric: measurement.metric, condition: 'success' }, measurement.thresholds.success);
      if (measurement.thresholds.failure !== undefined) this.analysisThreshold.set({ ...labels, metric: measurement.metric, condition: 'failure' }, measurement.thresholds.failure);
    }
  }
}
