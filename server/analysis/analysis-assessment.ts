import { MAX_MEASUREMENTS, type AnalysisMetric } from './metric-definition.ts';
import type { Measurement } from './measurement.ts';

/**
 * How a metric's measurements so far add up, following Argo Rollouts' assessMetricStatus:
 *
 * 1. more Failed than failureLimit → Failed;
 * 2. more Inconclusive than inconclusiveLimit → Inconclusive;
 * 3. more consecutive Errors than consecutiveErrorLimit → Error;
 * 4. consecutiveSuccessLimit > 0 and reached → Successful (early);
 * 5. count measurements taken → Successful, or, when consecutiveSuccessLimit > 0 was never
 *    reached, Failed; with no Successful measurement at all (every one tolerated as Failed or
 *    Inconclusive by the limits) never Successful but Inconclusive;
 * 6. MAX_ERROR_MEASUREMENTS Errors in all → Error (a bound Argo does not have: with
 *    consecutiveErrorLimit -1 or very large, a backend that never answers would be measured
 *    forever);
 * 7. otherwise Running.
 *
 * As in Argo (MetricResult.Count: "the number of times the metric was measured without Error"),
 * only Successful, Failed and Inconclusive measurements count towards `count`: an Error is
 * retried (after the interval, or ERROR_RETRY_INTERVAL_MS without one) and counts only against
 * consecutiveErrorLimit.
 *
 * A limit of -1 disables its rule. The run's phase is the worst of its metrics:
 * Failed > Error > Inconclusive > Running > Successful; a Failed or Error metric ends the run at
 * once, an Inconclusive one lets the others finish (a later failure is more informative).
 */
export type MetricPhase = 'Running' | 'Successful' | 'Failed' | 'Inconclusive' | 'Error';
export type RunPhase = MetricPhase;

/** Argo's DefaultErrorRetryInterval: how long after an Error a metric without `interval` measures again. */
export const ERROR_RETRY_INTERVAL_MS = 10_000;

/** The most Error measurements one metric takes, whatever consecutiveErrorLimit says (-1 included). */
export const MAX_ERROR_MEASUREMENTS = MAX_MEASUREMENTS;

export interface MetricTally {
  /** Measurements that count towards `count`: Successful, Failed and Inconclusive (Argo's MetricResult.Count); Errors do not. */
  readonly count: number;
  readonly successful: number;
  readonly failed: number;
  readonly inconclusive: number;
  readonly error: number;
  readonly consecutiveSuccess: number;
  readonly consecutiveError: number;
}

export function tally(measurements: readonly Measurement[]): MetricTally {
  let successful = 0;
  let failed = 0;
  let inconclusive = 0;
  let error = 0;
  let consecutiveSuccess = 0;
  let consecutiveError = 0;
  for (const measurement of measurements) {
    switch (measurement.phase) {
      case 'Successful': successful += 1; consecutiveSuccess += 1; consecutiveError = 0; break;
      case 'Failed': failed += 1; consecutiveSuccess = 0; consecutiveError = 0; break;
      case 'Inconclusive': inconclusive += 1; consecutiveSuccess = 0; consecutiveError = 0; break;
      case 'Error': error += 1; consecutiveSuccess = 0; consecutiveError += 1; break;
    }
  }
  return { count: successful + failed + inconclusive, successful, failed, inconclusive, error, consecutiveSuccess, consecutiveError };
}

export interface MetricAssessment {
  readonly phase: MetricPhase;
  readonly message: string;
}

export function assessMetric(metric: AnalysisMetric, measurements: readonly Measurement[]): MetricAssessment {
  const t = tally(measurements);
  const last = measurements.at(-1);
  const because = last ? `: ${last.message}` : '';
  if (metric.failureLimit >= 0 && t.failed > metric.failureLimit) {
    return { phase: 'Failed', message: `${metric.name}: ${t.failed} failed measurement${t.failed === 1 ? '' : 's'} > failureLimit ${metric.failureLimit}${because}` };
  }
  if (metric.inconclusiveLimit >= 0 && t.inconclusive > metric.inconclusiveLimit) {
    return { phase: 'Inconclusive', message: `${metric.name}: ${t.inconclusive} inconclusive measurement${t.inconclusive === 1 ? '' : 's'} > inconclusiveLimit ${metric.inconclusiveLimit}${because}` };
  }
  if (metric.consecutiveErrorLimit >= 0 && t.consecutiveError > metric.consecutiveErrorLimit) {
    return { phase: 'Error', message: `${metric.name}: ${t.consecutiveError} consecutive errors > consecutiveErrorLimit ${metric.consecutiveErrorLimit}${because}` };
  }
  if (metric.consecutiveSuccessLimit > 0 && t.consecutiveSuccess >= metric.consecutiveSuccessLimit) {
    return { phase: 'Successful', message: `${metric.name}: ${t.consecutiveSuccess} consecutive successes reached consecutiveSuccessLimit` };
  }
  const retried = t.error === 0 ? '' : `${t.error} error${t.error === 1 ? '' : 's'} retried, not counted`;
  const detail = `(failed ${t.failed}, inconclusive ${t.inconclusive}${retried && `; ${retried}`})`;
  if (t.count >= metric.count) {
    if (metric.consecutiveSuccessLimit > 0) {
      return { phase: 'Failed', message: `${metric.name}: ${metric.count} measurements without ${metric.consecutiveSuccessLimit} consecutive successes ${detail}` };
    }
    if (t.successful === 0) {
      // Limits tolerate bad measurements; they never turn "nothing succeeded" into a success.
      // Errors do not count towards `count`, so at least one of these was Failed or Inconclusive.
      return { phase: 'Inconclusive', message: `${metric.name}: no successful measurement in ${t.count} ${detail}${because}` };
    }
    return { phase: 'Successful', message: `${metric.name}: ${t.successful}/${t.count} measurements successful ${detail}` };
  }
  if (t.error >= MAX_ERROR_MEASUREMENTS) {
    return { phase: 'Error', message: `${metric.name}: ${t.error} error measurements, the most one metric takes, before ${metric.count} without error${because}` };
  }
  return { phase: 'Running', message: `${metric.name}: ${t.count}/${metric.count} measurements taken${retried && ` (${retried})`}` };
}

const SEVERITY: Readonly<Record<MetricPhase, number>> = { Successful: 0, Running: 1, Inconclusive: 2, Error: 3, Failed: 4 };

export interface RunAssessment {
  readonly phase: RunPhase;
  readonly message: string;
  readonly metrics: Readonly<Record<string, MetricAssessment>>;
}

export function assessRun(metrics: readonly AnalysisMetric[], measurements: readonly Measurement[]): RunAssessment {
  const byMetric: Record<string, MetricAssessment> = {};
  for (const metric of metrics) {
    byMetric[metric.name] = assessMetric(metric, measurements.filter((m) => m.metric === metric.name));
  }
  const assessments = Object.values(byMetric);
  const terminal = assessments.filter((a) => a.phase === 'Failed' || a.phase === 'Error');
  const worst = (list: readonly MetricAssessment[]) => list.reduce((a, b) => (SEVERITY[b.phase] > SEVERITY[a.phase] ? b : a));
  if (terminal.length > 0) {
    const decisive = worst(terminal);
    return { phase: decisive.phase, message: decisive.message, metrics: byMetric };
  }
  if (assessments.some((a) => a.phase === 'Running')) return { phase: 'Running', message: 'measuring', metrics: byMetric };
  if (assessments.length === 0) return { phase: 'Successful', message: 'no metrics', metrics: byMetric };
  const decisive = worst(assessments);
  return {
    phase: decisive.phase,
    message: decisive.phase === 'Successful' ? assessments.map((a) => a.message).join('; ') : decisive.message,
    metrics: byMetric,
  };
}
