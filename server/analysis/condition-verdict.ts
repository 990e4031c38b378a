import { ConditionEvaluationError, conditionThreshold, evaluateCondition, type ConditionScope } from './condition/condition-evaluator.ts';
import type { ConditionNode } from './condition/condition-parser.ts';
import type { AnalysisMetric } from './metric-definition.ts';
import type { Measurement, MeasurementPhase } from './measurement.ts';

/**
 * The verdict of a query metric's measurement from its values, as Argo evaluates
 * successCondition and failureCondition:
 *
 * - empty result, or fewer samples than minSamples (or an infinite count) → Inconclusive;
 * - NaN values (a per-device ratio of an idle device is 0/0): failureCondition true over the
 *   values that are not NaN → Failed (a NaN elsewhere does not hide a definite failure), else
 *   Inconclusive. A failureCondition that indexes result or baseline or takes its len() is not
 *   evaluated so (leaving the NaN out would move the positions and change the count);
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

  if (input.values.length === 0) return verdict('Inconclusive', 'empty result');
  const nanValues = input.values.some(Number.isNaN);
  if (nanValues || (input.baseline && input.baseline.length > 0 && input.baseline.some(Number.isNaN))) {
    const failed = failureWithoutNaN(metric, input);
    if (failed) return verdict('Failed', `${shown}: failureCondition "${metric.failureCondition!.source}" is true ${failed}`);
  }
  if (nanValues) return verdict('Inconclusive', `${shown} has NaN`);
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

/**
 * Whether the failure condition holds over the values that are not NaN (and the samples suffice):
 * then, whatever the NaN values stand for, the measurement fails. Paired result and baseline
 * vectors (of one length) lose a position where either is NaN. Returns what was left out, or
 * null: not failing, no condition, too few samples, nothing left, a condition that cannot be
 * evaluated, or one that depends on positions or the count (result[i], len(result)).
 */
function failureWithoutNaN(metric: AnalysisMetric, input: ValuesToJudge): string | null {
  const condition = metric.failureCondition;
  if (!condition || dependsOnPositions(condition.ast)) return null;
  const paired = input.baseline !== undefined && input.baseline.length === input.values.length;
  const keep = (i: number) => !Number.isNaN(input.values[i]!) && !(paired && Number.isNaN(input.baseline![i]!));
  const values = input.values.filter((_, i) => keep(i));
  // The samples are the result's values unless a samplesQuery counted them: then NaN ones do not count.
  const samples = input.samples === input.values.length ? values.length : input.samples;
  if (!(samples >= metric.minSamples) || !Number.isFinite(samples)) return null;
  const baseline = input.baseline === undefined ? undefined : paired ? input.baseline.filter((_, i) => keep(i)) : input.baseline.filter((value) => !Number.isNaN(value));
  if (values.length === 0 || (baseline !== undefined && baseline.length === 0)) return null;
  try {
    if (!evaluateCondition(condition, { result: values, ...(baseline === undefined ? {} : { baseline }), args: input.args })) return null;
  } catch {
    return null;
  }
  const left = input.values.length - values.length + (baseline === undefined || paired ? 0 : input.baseline!.length - baseline.length);
  return `over the values that are not NaN (${left} NaN left out)`;
}

function dependsOnPositions(node: ConditionNode): boolean {
  switch (node.type) {
    case 'index': return true;
    case 'call': return node.name === 'len' || node.args.some(dependsOnPositions) || (node.predicate !== undefined && dependsOnPositions(node.predicate));
    case 'unary': return dependsOnPositions(node.operand);
    case 'binary': return dependsOnPositions(node.left) || dependsOnPositions(node.right);
    default: return false;
  }
}

function showValues(values: readonly number[]): string {
  const shown = values.slice(0, 8).map((value) => (Number.isInteger(value) ? String(value) : value.toPrecision(6)));
  return values.length === 1 ? shown[0]! : `[${shown.join(', ')}${values.length > 8 ? `, … ${values.length} values` : ''}]`;
}
