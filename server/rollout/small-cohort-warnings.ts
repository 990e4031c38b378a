import type { RolloutState } from './rollout-state.ts';
import { grownCohort } from './rollout-state-machine.ts';

/**
 * Warnings, at a rollout's start, about analysis steps whose relative metrics can never have
 * their samples: a relative check counts one sample a device of the cohort (its candidate against
 * its own baseline), so a cohort smaller than the metric's minSamples makes every measurement
 * Inconclusive, and the rollout pauses at that step however good the candidate is. The start is
 * not refused (devices may still join the fleet, and an operator may mean to judge by hand), but
 * it is said before the wait rather than after it.
 */
export function smallCohortWarnings(state: RolloutState): string[] {
  const warnings: string[] = [];
  let cohort: string[] = [];
  state.spec.steps.forEach((step, index) => {
    if (step.kind === 'setWeight' || step.kind === 'devices' || step.kind === 'selector') {
      const before = cohort.length;
      cohort = grownCohort(state.devices, cohort, step);
      // A step that adds no device: the analysis after it measures the same devices again, and the
      // rollout is no more careful for it (a 50% step after a pilot that is half the fleet). The
      // last growth step, a conventional `setWeight: 100`, is not warned of on a small fleet (a
      // pilot that is the whole fleet); an earlier 100% step only assigns the candidate, as any
      // other does (the activation everywhere comes after the last step, whatever it is).
      const conventionalLast = step.kind === 'setWeight' && step.percent === 100 && !laterGrowth(state.spec.steps, index);
      if (cohort.length === before && before > 0 && !conventionalLast) {
        const remeasured = analysisBeforeNextGrowth(state.spec.steps, index) ? ', and the analysis after it measures the same devices again' : '';
        warnings.push(
          `steps[${index}] (${describeGrowth(step)}) adds no device: the cohort holds ${before} of ${state.devices.length} devices by then, so the step changes nothing${remeasured}; ${step.kind === 'setWeight' && step.percent === 100 ? 'drop it' : 'raise it, or drop it'}`,
        );
      }
      return;
    }
    if (step.kind !== 'analysis') return;
    for (const metric of step.metrics) {
      if (metric.source.kind !== 'relative' || cohort.length >= metric.minSamples) continue;
      warnings.push(
        `steps[${index}].analysis metric "${metric.name}": the cohort holds ${cohort.length} device${cohort.length === 1 ? '' : 's'} by then, under its minSamples ${metric.minSamples} ` +
          '(one sample a device): every measurement will be Inconclusive and the rollout will pause there; grow the cohort in an earlier step, or set minSamples lower',
      );
    }
  });
  return warnings;
}

function describeGrowth(step: { kind: 'setWeight'; percent: number } | { kind: 'devices'; deviceIds: readonly string[] } | { kind: 'selector' }): string {
  if (step.kind === 'setWeight') return `setWeight ${step.percent}`;
  return step.kind === 'devices' ? `devices: ${step.deviceIds.length}` : 'selector';
}

/** Whether a step after `index` grows the cohort. */
function laterGrowth(steps: RolloutState['spec']['steps'], index: number): boolean {
  return steps.slice(index + 1).some((step) => step.kind === 'setWeight' || step.kind === 'devices' || step.kind === 'selector');
}

/** Whether an analysis step follows step `index` before the cohort grows again (it would measure the cohort as it was). */
function analysisBeforeNextGrowth(steps: RolloutState['spec']['steps'], index: number): boolean {
  for (const step of steps.slice(index + 1)) {
    if (step.kind === 'analysis') return true;
    if (step.kind === 'setWeight' || step.kind === 'devices' || step.kind === 'selector') return false;
  }
  return false;
}
