import type { UnitStatistics } from './unit-statistics.ts';

export type EpsilonMode = 'relative' | 'absolute';

/**
 * ODF2NNA's selection: a unit is useful when its variability exceeds ε × the largest variability
 * in its layer (relative mode) or ε itself (absolute mode). A layer is never emptied: its most
 * variable unit is always kept. Returns the kept unit indices of each hidden layer, ascending.
 */
export function selectUsefulUnits(stats: readonly UnitStatistics[], epsilon: number, mode: EpsilonMode): number[][] {
  return stats.map(({ std }) => {
    let most = 0;
    for (let j = 1; j < std.length; j++) if (std[j]! > std[most]!) most = j;
    const threshold = mode === 'relative' ? epsilon * std[most]! : epsilon;
    const kept: number[] = [];
    for (let j = 0; j < std.length; j++) if (std[j]! > threshold || j === most) kept.push(j);
    return kept;
  });
}

/**
 * The L1-norm baseline: in each hidden layer keep the `counts[l]` units whose outgoing weights
 * have the largest L1 norm (ties broken by index), so it matches ODF2NNA's architecture.
 */
export function selectByOutgoingL1(
  outgoing: readonly { inputs: number; units: number; weights: Float32Array }[],
  counts: readonly number[],
): number[][] {
  return counts.map((count, l) => {
    const next = outgoing[l]!;
    const norms = Array.from({ length: next.inputs }, (_, j) => {
      let sum = 0;
      for (let k = 0; k < next.units; k++) sum += Math.abs(next.weights[j * next.units + k]!);
      return { j, sum };
    });
    norms.sort((a, b) => b.sum - a.sum || a.j - b.j);
    return norms
      .slice(0, count)
      .map(({ j }) => j)
      .sort((a, b) => a - b);
  });
}
