import { Counter, Gauge, type Registry } from 'prom-client';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DecisionLogEntry, RolloutState } from './rollout-state.ts';
import { isTerminal, weight } from './rollout-state-machine.ts';

/** Finished rollouts whose series stay exported (Prometheus keeps the history of older ones). */
export const EXPORTED_FINISHED_ROLLOUTS = 20;

type Metric = Gauge<string> | Counter<string>;

/**
 * The rollout controller's metrics, on an injected registry (the server's). Labels: rollout,
 * model, version (the candidate), and metric / verdict / kind where they apply. Unfinished
 * rollouts and the last EXPORTED_FINISHED_ROLLOUTS finished ones are exported; an older finished
 * rollout's series are removed, so the series grow with the rollouts in flight, not with history.
 */
export class RolloutMetrics {
  readonly step: Gauge<'rollout' | 'model' | 'version'>;
  readonly weight: Gauge<'rollout' | 'model' | 'version'>;
  readonly unreachable: Gauge<'rollout' | 'model' | 'version'>;
  readonly analysisValue: Gauge<'rollout' | 'model' | 'version' | 'metric'>;
  readonly analysisThreshold: Gauge<'rollout' | 'model' | 'version' | 'metric' | 'condition'>;
  readonly decisions: Counter<'rollout' | 'model' | 'version' | 'kind' | 'metric' | 'verdict'>;
  readonly decisionTimestamp: Gauge<'rollout' | 'model' | 'version' | 'kind' | 'metric' | 'verdict'>;
  readonly failingActions: Gauge<'rollout'>;

  constructor(registry: Registry) {
    const base = ['rollout', 'model', 'version'] as const;
    this.step = new Gauge({ name: ROLLOUT_METRICS.step, help: 'Index of the step the rollout is on (the number of steps once activating everywhere)', labelNames: base, registers: [registry] });
    this.weight = new Gauge({ name: ROLLOUT_METRICS.weight, help: 'Percent of the rollout target devices given the candidate', labelNames: base, registers: [registry] });
    this.unreachable = new Gauge({ name: ROLLOUT_METRICS.unreachableDevices, help: 'Devices of the rollout that timed out into unreachable (not those that left the fleet)', labelNames: base, registers: [registry] });
    this.analysisValue = new Gauge({ name: ROLLOUT_METRICS.analysisValue, help: "Last measured value of an analysis metric, in that metric's own unit (accuracy in points, latency in ms, mse in label units², error rate a ratio, a query's as it returns: compare series of one metric only) (median of a vector; of a relative check, the candidate median, context only: its verdict is on the per-device margins, in the decision message)", labelNames: [...base, 'metric'], registers: [registry] });
    this.analysisThreshold = new Gauge({ name: ROLLOUT_METRICS.analysisThreshold, help: 'Threshold the last value of an analysis metric was compared with (of a relative check, success: the bound of the baseline median, context only: each device is compared with its own bound)', labelNames: [...base, 'metric', 'condition'], registers: [registry] });
    this.decisions = new Counter({ name: ROLLOUT_METRICS.decisions, help: 'Rollout decisions (measurements, steps, promotions, failures, commands) by verdict', labelNames: [...base, 'kind', 'metric', 'verdict'], registers: [registry] });
    this.decisionTimestamp = new Gauge({ name: ROLLOUT_METRICS.decisionTimestamp, help: 'When the latest rollout decision with these labels was made, in Unix seconds', labelNames: [...base, 'kind', 'metric', 'verdict'], registers: [registry] });
    this.failingActions = new Gauge({ name: ROLLOUT_METRICS.failingActions, help: 'Actions of the rollout (assignments, reverts, version status) whose last attempt failed, waiting to be retried', labelNames: ['rollout'], registers: [registry] });
  }

  /** Sets how many of the rollout's actions failed their last attempt (0 once they went through). */
  setFailingActions(rollout: string, count: number): void {
    this.failingActions.set(this.#track(this.failingActions, { rollout }), count);
  }

  /** Drops every series: a deposed leader stops exporting what the new leader now drives (its values would freeze). */
  reset(): void {
    for (const rollout of [...this.#series.keys()]) this.#forget(rollout);
    this.#finished.clear();
  }

  /** Per rollout and metric, every label set it exports (by its JSON). */
  readonly #series = new Map<string, Map<Metric, Map<string, Record<string, string>>>>();
  /** Finished rollouts still exported, oldest first. */
  readonly #finished = new Map<string, number>();

  /**
   * Exports a rollout again from its stored state and whole decision log (a restart, a new
   * leader), as the live server had it: a finished one too has its error counts from its start.
   */
  restore(state: RolloutState, decisions: readonly DecisionLogEntry[]): void {
    // Replaces what is exported for it: counted from the log alone, never on top of a live count.
    this.#forget(state.id);
    this.#zeroErrorCounts(state, { rollout: state.id, model: state.spec.model, version: state.spec.candidateVersion });
    this.observe(state, decisions);
  }

  /** Whether the rollout's series are exported (an evicted finished one is not). */
  has(rollout: string): boolean {
    return this.#series.has(rollout);
  }

  observe(state: RolloutState, decisions: readonly DecisionLogEntry[]): void {
    const labels = { rollout: state.id, model: state.spec.model, version: state.spec.candidateVersion };
    if (!this.#series.has(state.id) && !isTerminal(state)) this.#zeroErrorCounts(state, labels);
    const set = (metric: Gauge<string>, extra: Record<string, string>, value: number) => metric.set(this.#track(metric, { ...labels, ...extra }), value);
    set(this.step, {}, state.stepIndex);
    set(this.weight, {}, weight(state));
    // Not a device that left the fleet (revoked): counted unreachable by the rollout, it never comes back.
    set(this.unreachable, {}, state.devices.filter((device) => device.delivery === 'unreachable' && !device.left).length);
    for (const decision of decisions) {
      const measurement = decision.measurement;
      const decisionLabels = { ...labels, kind: decision.kind, metric: measurement?.metric ?? '', verdict: decision.verdict };
      this.decisions.inc(this.#track(this.decisions, decisionLabels));
      this.decisionTimestamp.set(this.#track(this.decisionTimestamp, { ...decisionLabels }), decision.at / 1000);
      if (!measurement) continue;
      // The median, as the dashboard charts it. Of a relative check it is context, like the bound
      // of the baseline median exported as its success threshold: the verdict compares each device
      // with its own bound (the per-device margins in the message), so the two can disagree with it.
      // A value stored by an earlier server as null (JSON's NaN) is NaN, as it was measured: Gauge.set throws on anything but a number.
      const values = (measurement.value ?? []).map(asNumber);
      if (values.length > 0) {
        const sorted = [...values].sort((a, b) => a - b);
        const middle = sorted.length >> 1;
        set(this.analysisValue, { metric: measurement.metric }, sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2);
      }
      if (measurement.thresholds.success !== undefined) set(this.analysisThreshold, { metric: measurement.metric, condition: 'success' }, asNumber(measurement.thresholds.success));
      if (measurement.thresholds.failure !== undefined) set(this.analysisThreshold, { metric: measurement.metric, condition: 'failure' }, asNumber(measurement.thresholds.failure));
    }
    if (isTerminal(state)) {
      // The last changed last (a rollback of an older rollout changes it again), as a restart orders
      // them: moved to the newest end only when its updatedAt changed (a commit that only records an
      // action's result changes neither).
      this.#finished.set(state.id, state.updatedAt);
      // The oldest by (updatedAt, id), as the repository orders them, whatever order they came in.
      while (this.#finished.size > EXPORTED_FINISHED_ROLLOUTS) {
        let oldest: [string, number] | undefined;
        for (const entry of this.#finished) if (!oldest || entry[1] < oldest[1] || (entry[1] === oldest[1] && entry[0] < oldest[0])) oldest = entry;
        this.#finished.delete(oldest![0]);
        this.#forget(oldest![0]);
      }
    }
  }

  /**
   * Exports each analysis metric's measurement-error count at 0 as soon as the rollout is seen, long
   * before its first measurement: Prometheus's increase() counts from a series' first sample, so
   * a count that first appeared at 1 would make FleetpruneAnalysisErrors (≥ 3 in 15 min) wait for
   * the fourth error.
   */
  #zeroErrorCounts(state: RolloutState, labels: Record<'rollout' | 'model' | 'version', string>): void {
    const metrics = new Set(state.spec.steps.flatMap((step) => (step.kind === 'analysis' ? step.metrics.map((metric) => metric.name) : [])));
    for (const metric of metrics) this.decisions.inc(this.#track(this.decisions, { ...labels, kind: 'measurement', metric, verdict: 'Error' }), 0);
  }

  #track<L extends Record<string, string>>(metric: Metric, labels: L): L {
    let byMetric = this.#series.get(labels.rollout!);
    if (!byMetric) this.#series.set(labels.rollout!, (byMetric = new Map()));
    let sets = byMetric.get(metric);
    if (!sets) byMetric.set(metric, (sets = new Map()));
    sets.set(JSON.stringify(labels), labels);
    return labels;
  }

  #forget(rollout: string): void {
    for (const [metric, sets] of this.#series.get(rollout) ?? []) for (const labels of sets.values()) metric.remove(labels);
    this.#series.delete(rollout);
  }
}

/** A stored value as the number it was: null (how JSON wrote NaN and ±Infinity before json-column.ts kept them) is NaN. */
function asNumber(value: unknown): number {
  return typeof value === 'number' ? value : Number.NaN;
}
