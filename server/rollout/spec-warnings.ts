import { constantCondition, PROBE_RESULTS } from '../analysis/condition/condition-probe.ts';
import type { AnalysisMetric } from '../analysis/metric-definition.ts';
import { relativeToleranceProblem } from '../analysis/relative-check.ts';
import type { RolloutSpec } from './rollout-spec.ts';

/**
 * Warnings about a valid spec whose analysis cannot decide anything: no analysis step at all, a
 * condition that gives the same verdict whatever the metric returns, a relative check whose
 * tolerance lets anything through. They are returned when a rollout starts (and by `rollout
 * validate`) and never block it: the spec may mean it (a smoke test that only checks the query
 * answers, a lab fleet moved at once).
 */
export function specWarnings(spec: RolloutSpec): string[] {
  const warnings: string[] = [];
  if (!spec.steps.some((step) => step.kind === 'analysis')) warnings.push(NO_ANALYSIS_WARNING);
  const budget: ProbeBudget = { left: PROBE_BUDGET, skipped: 0 };
  spec.steps.forEach((step, index) => {
    if (step.kind !== 'analysis') return;
    for (const metric of step.metrics) {
      for (const problem of metricProblems(metric, budget)) warnings.push(`steps[${index}].analysis metric "${metric.name}": ${problem}`);
    }
  });
  if (budget.skipped > 0) {
    warnings.push(`${budget.skipped} condition${budget.skipped === 1 ? ' was' : 's were'} not checked for verdicts that decide nothing: the spec's conditions are too many or too long to check them all`);
  }
  return warnings;
}

/** The warning about a spec without any analysis step. */
export const NO_ANALYSIS_WARNING =
  "no analysis step: nothing compares the candidate's metrics with the baseline's before it reaches more devices; only a device that refuses the candidate or cannot benchmark it, an abort or a rollback stops it";

/**
 * Probing runs a condition some 1,600 times (with a baseline), synchronously: a valid 1 MB spec of
 * long conditions held the server's event loop 6 s, twice per start. Past this many characters ×
 * probes in one spec, the remaining conditions are not probed (and one warning says so).
 */
const PROBE_BUDGET = 100_000_000;

interface ProbeBudget {
  left: number;
  skipped: number;
}

/** The arguments the rollout sets differ per rollout: conditions are probed with a few of each. */
const ROLLOUT_ARG_VARIANTS: readonly Readonly<Record<string, string>>[] = [
  { rollout: 'r', model: 'm', candidateVersion: 'v', cohort: 'd', cohortSize: '1', step: '0', fleet: 'f' },
  { rollout: 'r', model: 'm', candidateVersion: 'v', cohort: 'd', cohortSize: '5', step: '2', fleet: 'f' },
  { rollout: 'r', model: 'm', candidateVersion: 'v', cohort: 'd', cohortSize: '1000', step: '9', fleet: 'f' },
];

function metricProblems(metric: AnalysisMetric, budget: ProbeBudget): string[] {
  if (metric.source.kind === 'relative') {
    const problem = relativeToleranceProblem(metric.source);
    return problem ? [problem] : [];
  }
  const baseline = metric.source.baselineQuery !== undefined;
  const argVariants = ROLLOUT_ARG_VARIANTS.map((builtin) => ({ ...builtin, ...metric.args }));
  const problems: string[] = [];
  for (const field of ['successCondition', 'failureCondition'] as const) {
    const condition = metric[field];
    if (!condition) continue;
    const cost = condition.source.length * argVariants.length * PROBE_RESULTS * (baseline ? PROBE_RESULTS : 1);
    if (cost > budget.left) {
      budget.skipped += 1;
      continue;
    }
    budget.left -= cost;
    const constant = constantCondition(condition, { baseline, argVariants });
    if (!constant) continue;
    const effect = field === 'successCondition' ? (constant.value ? 'it passes every measurement' : 'no measurement can pass by it') : constant.value ? 'every measurement fails' : 'it never fails a measurement';
    problems.push(
      constant.always
        ? `${field} "${condition.source}" is ${constant.value} whatever the query returns: ${effect}`
        : `${field} "${condition.source}" is ${constant.value} for every result of 0 or more: unless the query can return negative values (counts, rates, durations and ratios cannot), ${effect}`,
    );
  }
  return problems;
}
