import { ConditionEvaluationError, conditionThreshold, evaluateCondition, type ConditionScope } from './condition/condition-evaluator.ts';
import type { AnalysisMetric } from './metric-definition.ts';
import type { Measurement, MeasurementPhase } from './measurement.ts';

/**
 * The verdict of a query metric's measurement from its values, as Argo evaluates
 * successCondition and failureCondition:
 *
 * - empty result, NaN values, or fewer samples than minSamples (or an infinite count) → Inconclusive;
 * - ±Inf values can make a measurement Failed, never Successful: where the conditions would
 *   pass it, it is Inconclusive;
 * - failureCondition true → Failed;
 * - successCondition given: true → Successful; false → Failed when there is no
 *   failureCondition, else Inconclusive (neither condition holds);
 * - only failureCondition, false → Successful;
 * - a condition that cannot be evaluated (index out of range, vector where a number is needed)
 *   → Error.
 */
export interface ValuesToJudge {
  readonly values: readonly number[];
  readonly baseline?: readonly number[];
  /** Samples behind the result; the result's length when there is no samplesQuery. */
  readonly samples: number;
  readonly args: Readonly<Record<string, string>>;
  /** The metric's first measurement in this analysis (an empty one then says more). */
  readonly first?: boolean;
}

export interface ConditionVerdict {
  readonly phase: MeasurementPhase;
  readonly message: string;
  readonly thresholds: Measurement['thresholds'];
}

export function judgeConditions(metric: AnalysisMetric, input: ValuesToJudge): ConditionVerdict {
  const scope: ConditionScope = {
    result: input.values,
    ...(input.baseline === undefined ? {} : { baseline: input.baseline }),
    args: input.args,
  };
  const success = metric.successCondition && conditionThreshold(metric.successCondition, scope);
  const failure = metric.failureCondition && conditionThreshold(metric.failureCondition, scope);
  const thresholds = {
    ...(metric.successCondition ? { successCondition: metric.successCondition.source } : {}),
    ...(metric.failureCondition ? { failureCondition: metric.failureCondition.source } : {}),
    ...(typeof success === 'number' ? { success } : {}),
    ...(typeof failure === 'number' ? { failure } : {}),
    minSamples: metric.minSamples,
  };
  const verdict = (phase: MeasurementPhase, message: string): ConditionVerdict => ({ phase, message, thresholds });
  const shown = `result ${showValues(input.values)}${input.baseline ? `, baseline ${showValues(input.baseline)}` : ''}`;

  if (input.values.length === 0) {
    // The common first-time mistake: a query measured before anything it reads exists.
    const early =
      input.first && metric.initialDelayMs === 0
        ? `: no series yet? This metric has no initialDelay, so its first measurement came as its analysis began (when its step began, or at a resume), maybe before the devices' reports reached the metrics (give it one, e.g. initialDelay: 1m); or its query reads a series these devices never report`
        : '';
    return verdict('Inconclusive', `empty result${early}`);
  }
  // NaN is what PromQL and the builtin provider give for 0/0: an error ratio with no predictions served, say.
  if (input.values.some(Number.isNaN)) return verdict('Inconclusive', `${shown} has NaN (not a number: a ratio of nothing, such as errors over predictions while none were served)`);
  if (input.baseline && input.baseline.length === 0) return verdict('Inconclusive', 'empty baseline');
  if (input.baseline?.some(Number.isNaN)) return verdict('Inconclusive', `${shown}: baseline has NaN`);
  if (Number.isNaN(input.samples) || input.samples < metric.minSamples) {
    return verdict('Inconclusive', `too few samples: ${Number.isNaN(input.samples) ? 'NaN' : input.samples} < minSamples ${metric.minSamples}`);
  }
  if (!Number.isFinite(input.samples)) return verdict('Inconclusive', `the sample count is ${input.samples}, not a number of samples`);
  // ±Inf (a division by zero, an overflow, a misbehaving backend) may fail a metric but never
  // pass one: a success on an infinite value is not evidence.
  const infinite = [...input.values, ...(input.baseline ?? [])].some((value) => !Number.isFinite(value));
  const successful = (message: string): ConditionVerdict =>
    infinite ? verdict('Inconclusive', `${shown} has an infinite value; it never counts as success (${message})`) : verdict('Successful', `${shown}: ${message}`);
  try {
    if (metric.failureCondition && evaluateCondition(metric.failureCondition, scope)) {
      return verdict('Failed', `${shown}: failureCondition "${metric.failureCondition.source}" is true`);
    }
    if (metric.successCondition) {
      if (evaluateCondition(metric.successCondition, scope)) return successful(`successCondition "${metric.successCondition.source}" is true`);
      if (!metric.failureCondition) return verdict('Failed', `${shown}: successCondition "${metric.successCondition.source}" is false`);
      return verdict('Inconclusive', `${shown}: neither successCondition nor failureCondition holds`);
    }
    return successful(`failureCondition "${metric.failureCondition!.source}" is false`);
  } catch (error) {
    if (error instanceof ConditionEvaluationError) return verdict('Error', `${shown}: ${error.message}`);
    throw error;
  }
}

function showValues(values: readonly number[]): string {
  const shown = values.slice(0, 8).map((value) => (Number.isInteger(value) ? String(value) : value.toPrecision(6)));
  return values.length === 1 ? shown[0]! : `[${shown.join(', ')}${values.length > 8 ? `, … ${values.length} values` : ''}]`;
}
