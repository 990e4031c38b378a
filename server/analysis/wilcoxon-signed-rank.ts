import { normalSurvival, type Alternative } from './mann-whitney.ts';
import { midranks } from './midranks.ts';

/**
 * The Wilcoxon signed-rank test of paired differences dᵢ (here: a device's candidate value minus
 * the bound from its own baseline). Matches scipy.stats.wilcoxon with its defaults
 * (zero_method 'wilcox', no continuity correction):
 *
 * - zero differences are dropped; the statistic is W⁺, the sum of the ranks of |dᵢ| (midranks
 *   for ties) over the positive dᵢ;
 * - `alternative`: 'greater' tests whether the differences tend to be positive, 'less'
 *   negative, 'two-sided' either;
 * - `method`: 'exact' (the distribution of W⁺ over the 2ⁿ sign patterns of these ranks, midranks
 *   included), 'asymptotic' (normal approximation with tie correction), or 'auto' (exact up to
 *   50 non-zero differences, as scipy).
 */
export interface WilcoxonOptions {
  readonly alternative?: Alternative;
  readonly method?: 'auto' | 'exact' | 'asymptotic';
}

export interface WilcoxonResult {
  /** W⁺: the rank sum of the positive differences. */
  readonly w: number;
  /** The normal approximation's z (also reported when the p-value is exact). */
  readonly z: number;
  readonly p: number;
  readonly method: 'exact' | 'asymptotic';
  /** Differences that count (the non-zero ones). */
  readonly n: number;
  readonly zeros: number;
  readonly ties: boolean;
}

const AUTO_EXACT_MAX_N = 50;
const EXACT_MAX_N = 1000;

export function wilcoxonSignedRank(differences: readonly number[], options: WilcoxonOptions = {}): WilcoxonResult {
  const alternative = options.alternative ?? 'two-sided';
  for (const value of differences) {
    if (!Number.isFinite(value)) throw new RangeError(`the Wilcoxon signed-rank test needs finite values, got ${value}`);
  }
  const nonZero = differences.filter((value) => value !== 0);
  const n = nonZero.length;
  const zeros = differences.length - n;
  // Nothing but zeros: no evidence either way.
  if (n === 0) return { w: 0, z: 0, p: 1, method: 'exact', n, zeros, ties: false };
  const { ranks, tieTerm } = midranks(nonZero.map(Math.abs));
  let w = 0;
  for (let i = 0; i < n; i += 1) if (nonZero[i]! > 0) w += ranks[i]!;
  const ties = tieTerm > 0;
  const mean = (n * (n + 1)) / 4;
  const sd = Math.sqrt((n * (n + 1) * (2 * n + 1)) / 24 - tieTerm / 48);
  const z = sd === 0 ? 0 : (w - mean) / sd;

  const method = options.method ?? 'auto';
  if (method === 'exact' && n > EXACT_MAX_N) throw new RangeError(`the exact Wilcoxon signed-rank test is limited to ${EXACT_MAX_N} differences; use the asymptotic method`);
  const exact = method === 'exact' || (method === 'auto' && n <= AUTO_EXACT_MAX_N);
  let p: number;
  if (exact) {
    // Midranks are multiples of ½: the distribution is built over twice the ranks.
    const counts = signedRankCounts(ranks.map((rank) => Math.round(rank * 2)));
    const doubled = Math.round(w * 2);
    const total = 2 ** n;
    const atMost = counts.slice(0, doubled + 1).reduce((sum, count) => sum + count, 0) / total;
    const atLeast = counts.slice(doubled).reduce((sum, count) => sum + count, 0) / total;
    p = alternative === 'greater' ? atLeast : alternative === 'less' ? atMost : 2 * Math.min(atLeast, atMost);
  } else if (sd === 0) {
    p = 1;
  } else {
    p = alternative === 'greater' ? normalSurvival(z) : alternative === 'less' ? normalSurvival(-z) : 2 * normalSurvival(Math.abs(z));
  }
  return { w, z, p: Math.min(1, Math.max(0, p)), method: exact ? 'exact' : 'asymptotic', n, zeros, ties };
}

/** How many of the 2ⁿ sign patterns of these (integer) ranks give each sum of the positive ones. */
function signedRankCounts(ranks: readonly number[]): number[] {
  const max = ranks.reduce((sum, rank) => sum + rank, 0);
  const counts = new Array<number>(max + 1).fill(0);
  counts[0] = 1;
  let reach = 0;
  for (const rank of ranks) {
    reach += rank;
    for (let sum = reach; sum >= rank; sum -= 1) counts[sum]! += counts[sum - rank]!;
  }
  return counts;
}
