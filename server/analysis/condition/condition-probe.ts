import { evaluateCondition, type ConditionScope } from './condition-evaluator.ts';
import type { ParsedCondition } from './condition-parser.ts';

/**
 * Whether a condition is constant: the same verdict whatever the query returns, so it decides
 * nothing (`result[0] >= 0` of a count, `len(result) > 0`, `result[0] > 1 || true`). Found by
 * evaluating it over probe results: zero, tiny, fractional, large and huge values of both signs,
 * as single values and as vectors. NaN is not probed: a NaN result is Inconclusive before any
 * condition is evaluated (condition-verdict.ts), and ±Inf can never pass a measurement either.
 * Probes whose evaluation fails (an index out of range for that vector) are left out.
 */
const SCALARS = [0, 1e-9, 0.01, 0.5, 1, 2, 100, 1e4, 1e15, -1e-9, -0.01, -0.5, -1, -100, -1e15] as const;
const VECTORS: readonly (readonly number[])[] = [
  ...SCALARS.map((value) => [value]),
  [0, 1],
  [1, 0],
  [0.5, 100],
  [100, 0.5, 1e4],
  [1e15, 0],
  [-1, 1],
  [1, -1],
  [-1e15, -0.5],
];

/** How many results a condition is probed with (and as many baselines for each, when it has one), per argument set. */
export const PROBE_RESULTS = VECTORS.length;

export interface ConstantCondition {
  readonly value: boolean;
  /** True: constant over every probe; false: only over results (and baselines) of no negative value. */
  readonly always: boolean;
}

/**
 * The verdict the condition always gives, or null when some probes make it true and others
 * false (or too few evaluate). `argVariants`: the argument sets to try (the rollout's own, such as
 * cohortSize, differ between rollouts).
 */
export function constantCondition(condition: ParsedCondition, options: { baseline: boolean; argVariants: readonly Readonly<Record<string, string>>[] }): ConstantCondition | null {
  const all = new Set<boolean>();
  const nonNegative = new Set<boolean>();
  let evaluated = 0;
  const baselines: readonly (readonly number[] | undefined)[] = options.baseline ? VECTORS : [undefined];
  for (const args of options.argVariants) {
    for (const result of VECTORS) {
      for (const baseline of baselines) {
        const scope: ConditionScope = { result, ...(baseline === undefined ? {} : { baseline }), args };
        let verdict: boolean;
        try {
          verdict = evaluateCondition(condition, scope);
        } catch {
          continue;
        }
        evaluated += 1;
        all.add(verdict);
        if (result.every((value) => value >= 0) && (baseline ?? []).every((value) => value >= 0)) nonNegative.add(verdict);
        if (all.size > 1 && nonNegative.size > 1) return null;
      }
    }
  }
  if (evaluated < 3) return null;
  if (all.size === 1) return { value: [...all][0]!, always: true };
  if (nonNegative.size === 1) return { value: [...nonNegative][0]!, always: false };
  return null;
}
