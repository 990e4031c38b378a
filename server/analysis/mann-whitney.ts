import { midranks } from './midranks.ts';
/**
 * The Mann-Whitney U test (Wilcoxon rank-sum) of two independent samples, as Kayenta uses to
 * compare a canary with its baseline. Matches scipy.stats.mannwhitneyu:
 *
 * - U is the statistic of the first sample x: U₁ = R₁ − n₁(n₁+1)/2, with midranks for ties.
 * - `alternative`: 'greater' tests whether x tends to be larger than y, 'less' smaller,
 *   'two-sided' either.
 * - `method`: 'exact' (the permutation distribution of U; only without ties), 'asymptotic'
 *   (normal approximation with tie correction and, by default, continuity correction), or
 *   'auto' (exact when there are no ties and either sample has 8 values or fewer, like scipy,
 *   as long as n1 × n2 ≤ EXACT_MAX_CELLS). The exact distribution costs O(n1²·n2²) time and
 *   O(min(n1, n2)·n1·n2) memory, so it is bounded as the exact Wilcoxon signed-rank test is:
 *   beyond EXACT_MAX_CELLS 'auto' takes the normal approximation (excellent there) and 'exact'
 *   is refused.
 */
export type Alternative = 'two-sided' | 'less' | 'greater';

/**
 * The largest n1 × n2 the exact method takes (and 'auto' goes exact for): at most some 700k steps
 * over two buffers of at most 1 MB, a few ms (40 × 40 is the worst shape); the earlier limits let
 * 8 × 2500 ('auto') take 37 s and 100 × 100 ('exact') 4.8 s. Beyond it the normal approximation
 * is excellent.
 */
export const EXACT_MAX_CELLS = 1600;
export type Method = 'auto' | 'exact' | 'asymptotic';

export interface MannWhitneyOptions {
  readonly alternative?: Alternative;
  readonly method?: Method;
  readonly continuityCorrection?: boolean;
}

export interface MannWhitneyResult {
  /** U of the first sample. */
  readonly u: number;
  /** The normal approximation's z (also reported when the p-value is exact). */
  readonly z: number;
  readonly p: number;
  readonly method: 'exact' | 'asymptotic';
  readonly n1: number;
  readonly n2: number;
  readonly ties: boolean;
}

export function mannWhitneyU(x: readonly number[], y: readonly number[], options: MannWhitneyOptions = {}): MannWhitneyResult {
  const alternative = options.alternative ?? 'two-sided';
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) throw new RangeError(`Mann-Whitney U needs two non-empty samples (got ${n1} and ${n2} values)`);
  for (const value of [...x, ...y]) {
    if (!Number.isFinite(value)) throw new RangeError(`Mann-Whitney U needs finite values, got ${value}`);
  }
  const { ranks, tieTerm } = midranks([...x, ...y]);
  let rankSumX = 0;
  for (let i = 0; i < n1; i += 1) rankSumX += ranks[i]!;
  const u1 = rankSumX - (n1 * (n1 + 1)) / 2;
  const u2 = n1 * n2 - u1;
  const ties = tieTerm > 0;

  const n = n1 + n2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  const sd = Math.sqrt(variance);
  const correction = options.continuityCorrection === false ? 0 : 0.5;

  // The statistic whose upper tail is the p-value, as scipy does.
  const upper = alternative === 'greater' ? u1 : alternative === 'less' ? u2 : Math.max(u1, u2);
  const method = options.method ?? 'auto';
  const exact = method === 'exact' || (method === 'auto' && !ties && Math.min(n1, n2) <= 8 && n1 * n2 <= EXACT_MAX_CELLS);
  if (method === 'exact' && ties) throw new RangeError('the exact Mann-Whitney test needs samples without ties; use the asymptotic method');
  if (method === 'exact' && n1 * n2 > EXACT_MAX_CELLS) throw new RangeError(`the exact Mann-Whitney test is limited to n1 × n2 ≤ ${EXACT_MAX_CELLS}; use the asymptotic method`);

  const z = sd === 0 ? 0 : (u1 - mean) / sd;
  let p: number;
  if (exact) {
    p = exactUpperTail(upper, n1, n2);
  } else {
    p = sd === 0 ? 1 : normalSurvival((upper - mean - correction) / sd);
  }
  if (alternative === 'two-sided') p *= 2;
  return { u: u1, z, p: Math.min(1, Math.max(0, p)), method: exact ? 'exact' : 'asymptotic', n1, n2, ties };
}

/**
 * P(U ≥ u) under H0 for samples of n1 and n2 without ties: the number of arrangements with
 * statistic k follows f(k; m, n) = f(k − n; m − 1, n) + f(k; m, n − 1).
 */
function exactUpperTail(u: number, sizeA: number, sizeB: number): number {
  // U's null distribution is the same for (n1, n2) and (n2, n1); keep the rows dimension small.
  const n1 = Math.max(sizeA, sizeB);
  const n2 = Math.min(sizeA, sizeB);
  const maxU = n1 * n2;
  // Row j, entry k (at j × width + k): arrangements of i x-values and j y-values with U = k,
  // built up over i in two buffers used in turn (no allocation per step). Step i writes each row
  // j over 0..i·j, all that the step before it (two steps back for the same buffer) wrote there;
  // beyond that a buffer holds zeros.
  const width = maxU + 1;
  let previous = new Float64Array((n2 + 1) * width);
  let current = new Float64Array((n2 + 1) * width);
  for (let j = 0; j <= n2; j += 1) previous[j * width] = 1;
  current[0] = 1;
  for (let i = 1; i <= n1; i += 1) {
    for (let j = 1; j <= n2; j += 1) {
      const row = j * width;
      const above = row - width;
      for (let k = 0; k <= i * j; k += 1) {
        // Largest value is an x (it beats all j y's) or a y.
        current[row + k] = (k >= j ? previous[row + k - j]! : 0) + current[above + k]!;
      }
    }
    [previous, current] = [current, previous];
  }
  const counts = previous.subarray(n2 * width, n2 * width + width);
  let total = 0;
  let tail = 0;
  for (let k = 0; k <= maxU; k += 1) {
    total += counts[k]!;
    if (k >= Math.ceil(u - 1e-9)) tail += counts[k]!;
  }
  return tail / total;
}

/** P(Z > z) for a standard normal Z. */
export function normalSurvival(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/**
 * Complementary error function after W. J. Cody's rational approximations (three ranges).
 * Absolute error below 1e-9, far finer than any decision threshold on a p-value.
 */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const ax = Math.abs(x);
  let result: number;
  if (ax < 0.5) return 1 - erfSmall(x);
  if (ax < 4) {
    const p = [300.4592610201616005, 451.9189537118729422, 339.3208167343436870, 152.9892850469404039, 43.16222722205673530, 7.211758250883093659, 0.5641884969886700892, -1.368648573827167067e-7];
    const q = [300.4592609569832933, 790.9509253278980272, 931.3540948506096211, 638.9802644656311665, 277.5854447439876434, 77.00015293522947295, 12.78272731962942351, 1];
    let num = 0;
    let den = 0;
    for (let i = p.length - 1; i >= 0; i -= 1) {
      num = num * ax + p[i]!;
      den = den * ax + q[i]!;
    }
    result = Math.exp(-ax * ax) * (num / den);
  } else {
    const p = [-2.99610707703542174e-3, -4.94730910623250734e-2, -2.26956593539686930e-1, -2.78661308609647788e-1, -2.23192459734184686e-2];
    const q = [1.06209230528467918e-2, 1.91308926107829841e-1, 1.05167510706793207, 1.98733201817135256, 1];
    const z = 1 / (ax * ax);
    let num = 0;
    let den = 0;
    for (let i = p.length - 1; i >= 0; i -= 1) {
      num = num * z + p[i]!;
      den = den * z + q[i]!;
    }
    result = (Math.exp(-ax * ax) / ax) * (1 / Math.sqrt(Math.PI) + z * (num / den));
  }
  return x < 0 ? 2 - result : result;
}

function erfSmall(x: number): number {
  const p = [3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3, 1.85777706184603153e-1];
  const q = [2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3];
  const z = x * x;
  let num = p[4]! * z;
  let den = z;
  for (let i = 0; i < 3; i += 1) {
    num = (num + p[i]!) * z;
    den = (den + q[i]!) * z;
  }
  return (x * (num + p[3]!)) / (den + q[3]!);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
