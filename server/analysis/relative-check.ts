import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { formatDuration } from '../../shared/util/duration.ts';
import { mannWhitneyU, median } from './mann-whitney.ts';
import { wilcoxonSignedRank } from './wilcoxon-signed-rank.ts';
import type { MeasurementPhase, RelativeEvidence } from './measurement.ts';
import { RELATIVE_DEFAULTS, type MetricSource, type RelativeMetricName } from './metric-definition.ts';
import { promqlAlternation, promqlString } from './query-template.ts';

/**
 * The built-in relative checks: the candidate against the baseline on the same devices, per
 * device, backed by two one-sided tests: the Wilcoxon signed-rank test of the per-device
 * differences (each device benchmarks both models on its own data, so its two values are a
 * pair: a shift that every device shows is found however much the devices differ from each
 * other), and the Mann-Whitney U test of the two sets of values (as Kayenta's judge does; with
 * four to five devices it is the only one that can reach p < 0.05). Either finding the
 * candidate worse at half the significance level fails it (Bonferroni over the two).
 *
 * Per device, the check reads the mean of the device's reports over the window for the
 * candidate (role="candidate", the candidate version) and the baseline (role="active" on the
 * same device: the agent benchmarks both side by side). Only devices with both count.
 * Each baseline value b is turned into its bound (b − tolerance or b × (1 − tolerance) for ≥,
 * b + tolerance or b × (1 + tolerance) for ≤), and the verdict is:
 *
 * - fewer devices than minSamples, or NaN values → Inconclusive;
 * - either test finds the candidate worse than the bounds with p < (1 − confidence) / 2 → Failed;
 * - the median AND the mean of the per-device differences (candidate − bound, the margins) are
 *   on the good side → Successful: at least half the devices are within tolerance, and those
 *   outside it lose less in all than the others are within it (a large loss on a minority of
 *   devices, which the median ignores and the rank tests barely see, pulls the mean to the bad
 *   side). With a relative tolerance (p95 ≤ baseline × 1.1) the mean is of each margin as a share
 *   of its device's baseline, so the slack of slow devices in ms cannot make up for fast ones 3×
 *   slower;
 * - otherwise (worse, but not significantly so) → Inconclusive, so a human decides; the message
 *   says how many devices are outside tolerance and which is the worst, by how much.
 */
type RelativeSource = Extract<MetricSource, { kind: 'relative' }>;

interface SeriesSpec {
  readonly name: string;
  /** From the exported unit to the check's unit. */
  readonly scale: number;
}

const SERIES: Readonly<Record<RelativeMetricName, SeriesSpec>> = {
  accuracy: { name: DEVICE_REPORT_METRICS.accuracy, scale: 100 },
  mse: { name: DEVICE_REPORT_METRICS.mse, scale: 1 },
  latency_p95: { name: DEVICE_REPORT_METRICS.latencyP95, scale: 1000 },
  error_rate: { name: DEVICE_REPORT_METRICS.errorRatio, scale: 100 },
};

export interface RelativeQueryContext {
  readonly model: string;
  readonly candidateVersion: string;
  readonly devices: readonly string[];
  /**
   * The versions these devices ran when the rollout started (their baselines). The baseline
   * query keeps to them, so an older active version's samples still in the window (a device's
   * series before its benchmark replaced it) are not averaged into the baseline.
   */
  readonly baselineVersions?: readonly string[];
  /**
   * When the rollout started, and the measurement's time: reports from before this rollout (an
   * earlier rollout of the same version, rolled back or aborted) are not its evidence. The window
   * reaches no further back (at least 1s), which is enough for report history; and a device counts
   * only if its latest report in the window is from notBefore on (the report-time gauge), as the
   * exported gauges keep a label set's last report and Prometheus (or the builtin provider's
   * recorder) scrapes it again and again, time-stamped with each scrape.
   */
  readonly notBefore?: Date;
  readonly at?: Date;
  /** The fleet label of this server's series (DEVICE_REPORT_LABELS): another fleet's in a shared Prometheus are not read. */
  readonly fleet?: string;
}

/**
 * The two PromQL queries a relative check sends: per-device candidate and baseline values. With
 * a start (notBefore), each keeps to the label sets whose latest report in the window was taken
 * from the start on: `… and last_over_time(fleetprune_device_report_timestamp_seconds{…}[w]) >= <start, Unix s>`.
 */
export function relativeQueries(source: RelativeSource, context: RelativeQueryContext): { candidate: string; baseline: string } {
  const series = SERIES[source.metric].name;
  const model = promqlString(context.model);
  const devices = promqlString(promqlAlternation(context.devices));
  const range = formatDuration(windowOf(source, context));
  const start = context.notBefore && context.at ? context.notBefore.getTime() / 1000 : undefined;
  const build = (matchers: string) => {
    const values = `avg_over_time(${series}{${matchers}}[${range}])`;
    const reportedSinceStart = start === undefined ? '' : ` and last_over_time(${DEVICE_REPORT_METRICS.reportTimestamp}{${matchers}}[${range}]) >= ${start}`;
    return `avg by (device) (${values}${reportedSinceStart})`;
  };
  const fleet = context.fleet === undefined ? '' : `,fleet="${promqlString(context.fleet)}"`;
  return {
    candidate: build(`model="${model}",version="${promqlString(context.candidateVersion)}",role="candidate",device=~"${devices}"${fleet}`),
    baseline: build(`model="${model}",${baselineVersionMatcher(context.baselineVersions)}role="active",device=~"${devices}"${fleet}`),
  };
}

/** The window in ms: the metric's, cut to the whole seconds since notBefore (at least 1s). */
export function windowOf(source: Pick<RelativeSource, 'windowMs'>, context: Pick<RelativeQueryContext, 'notBefore' | 'at'>): number {
  if (!context.notBefore || !context.at) return source.windowMs;
  const since = Math.floor((context.at.getTime() - context.notBefore.getTime()) / 1000) * 1000;
  return Math.min(source.windowMs, Math.max(1000, since));
}

function baselineVersionMatcher(versions: readonly string[] | undefined): string {
  if (!versions || versions.length === 0) return '';
  const distinct = [...new Set(versions)].sort();
  return distinct.length === 1 ? `version="${promqlString(distinct[0]!)}",` : `version=~"${promqlString(promqlAlternation(distinct))}",`;
}

/** The model task a relative metric's series exist for (accuracy: classifiers, mse: regressors); null: any. */
const RELATIVE_TASK: Readonly<Record<RelativeMetricName, 'classification' | 'regression' | null>> = {
  accuracy: 'classification',
  mse: 'regression',
  latency_p95: null,
  error_rate: null,
};

/**
 * Why a relative metric cannot judge a model of `task` (its series never exist for such a model,
 * so every measurement would be Inconclusive), else null.
 */
export function relativeTaskProblem(metric: RelativeMetricName, task: 'classification' | 'regression'): string | null {
  const needs = RELATIVE_TASK[metric];
  if (needs === null || needs === task) return null;
  return task === 'regression'
    ? `a relative ${metric} check needs a classifier, and this is a regression model: check mse instead (templates fleetprune-mse, fleetprune-relative-regression)`
    : `a relative ${metric} check needs a regression model, and this is a classifier: check accuracy instead (templates fleetprune-accuracy, fleetprune-relative)`;
}

/**
 * Why a query metric reads a per-device series a model of `task` never reports (a classifier's
 * accuracy of a regression model), else null: a warning at the start, as the query may read
 * something else besides (every measurement of it alone would be an empty result).
 */
export function queryTaskProblem(query: string, task: 'classification' | 'regression'): string | null {
  const [absent, instead] = task === 'regression' ? [DEVICE_REPORT_METRICS.accuracy, DEVICE_REPORT_METRICS.mse] : [DEVICE_REPORT_METRICS.mse, DEVICE_REPORT_METRICS.accuracy];
  if (!new RegExp(`\\b${absent}\\b`).test(query)) return null;
  return `its query reads ${absent}, which a ${task === 'regression' ? 'regression model' : 'classifier'} never reports (its devices report ${instead}): every measurement of it would be an empty result`;
}

export function relativeScale(metric: RelativeMetricName): number {
  return SERIES[metric].scale;
}

export function relativeBound(source: Pick<RelativeSource, 'comparator' | 'tolerance' | 'toleranceMode'>, baseline: number): number {
  const sign = source.comparator === '>=' ? -1 : 1;
  return source.toleranceMode === 'absolute' ? baseline + sign * source.tolerance : baseline * (1 + sign * source.tolerance);
}

export interface RelativeJudgement {
  readonly phase: MeasurementPhase;
  readonly message: string;
  readonly evidence?: RelativeEvidence;
}

/** At most this many devices short of a value are named in a "too few samples" message. */
const MAX_NAMED_DEVICES = 5;

/**
 * The rollout's devices that lack a candidate or a baseline value, named: a device that never
 * benchmarks (an agent without --holdout) or whose reports stopped would otherwise be found only
 * in that device's own log.
 */
function withoutBoth(rolloutDevices: readonly string[], candidate: ReadonlyMap<string, number>, baseline: ReadonlyMap<string, number>): string {
  const short = [...new Set(rolloutDevices)].filter((device) => !candidate.has(device) || !baseline.has(device)).sort();
  if (short.length === 0) return '';
  const lacks = (device: string) => (!candidate.has(device) && !baseline.has(device) ? 'neither' : candidate.has(device) ? 'no baseline' : 'no candidate');
  const named = short.slice(0, MAX_NAMED_DEVICES).map((device) => `${device} (${lacks(device)})`);
  const more = short.length > MAX_NAMED_DEVICES ? `, and ${short.length - MAX_NAMED_DEVICES} more` : '';
  // Neither: no benchmark report since the rollout started, which is also what a benchmark still
  // running looks like (a loaded device takes minutes), not only an agent without --holdout.
  const neither = short.some((device) => lacks(device) === 'neither') ? ' (neither: no benchmark report from it yet: its benchmark may still be running, or its agent has no --holdout)' : '';
  return `; without both: ${named.join(', ')}${more}${neither}`;
}

/** The pure verdict over per-device values (already in the check's unit). */
export function judgeRelative(
  source: RelativeSource,
  candidate: ReadonlyMap<string, number>,
  baseline: ReadonlyMap<string, number>,
  minSamples: number,
  rolloutDevices: readonly string[] = [],
): RelativeJudgement {
  const unit = RELATIVE_DEFAULTS[source.metric].unit;
  const devices = [...candidate.keys()].filter((device) => baseline.has(device)).sort();
  if (devices.length < minSamples) {
    return {
      phase: 'Inconclusive',
      message: `too few samples: ${devices.length} device${devices.length === 1 ? '' : 's'} with both candidate and baseline ${source.metric} reports (${candidate.size} candidate, ${baseline.size} baseline) < minSamples ${minSamples}${withoutBoth(rolloutDevices, candidate, baseline)}`,
    };
  }
  const c = devices.map((device) => candidate.get(device)!);
  const b = devices.map((device) => baseline.get(device)!);
  const nonFinite = devices.flatMap((device, i) => [
    ...(Number.isFinite(c[i]!) ? [] : [`${device} (candidate ${c[i]})`]),
    ...(Number.isFinite(b[i]!) ? [] : [`${device} (baseline ${b[i]})`]),
  ]);
  if (nonFinite.length > 0) {
    return { phase: 'Inconclusive', message: `${source.metric} has NaN or infinite per-device values: ${nonFinite.slice(0, 5).join(', ')}${nonFinite.length > 5 ? `, and ${nonFinite.length - 5} more` : ''}` };
  }
  // A candidate exactly at its bound (one holdout row worse against a tolerance of one row, a p95
  // exactly baseline × 1.1) computes a few ulps off it, either side: (14/200)·100 − ((15/200)·100 − 0.5)
  // is −1.8e-15. Values that close are the same value here, for the differences and the ranks alike.
  const snapped = withoutRoundingNoise([...c, ...b.map((value) => relativeBound(source, value))]);
  const cs = snapped.slice(0, c.length);
  const bounds = snapped.slice(c.length);
  const worse = source.comparator === '>=' ? 'less' : 'greater';
  const differences = cs.map((value, i) => value - bounds[i]!);
  const paired = wilcoxonSignedRank(differences, { alternative: worse });
  const unpaired = mannWhitneyU(cs, bounds, { alternative: worse });
  const p = Math.min(1, 2 * Math.min(paired.p, unpaired.p));
  // Both the typical device's margin and the average one must be on the good side. The median
  // alone ignores a minority however much worse (1 of 4 pilot devices 30 points worse passed);
  // the mean alone could pass half the devices outside tolerance on the others' gains. The mean,
  // not a Hodges-Lehmann estimate: on small holdouts one device's one-row miss is offset by
  // another's one-row hit (their margins average out), where a Hodges-Lehmann estimate averages a
  // miss with the devices that are merely equal and calls a candidate equal on most devices worse.
  const shift = median(differences);
  const mean = (values: readonly number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  const meanShift = mean(differences);
  // A relative tolerance is a share of each device's own baseline: the mean then counts each
  // margin as a share of its device's baseline, so the slack of a device with a large value (1 s
  // against 1.1 s) does not make up for the loss of one with a small value (30 ms against 11 ms).
  // A margin over a baseline of 0 is 0 when it is 0, else infinitely large.
  const relativeMode = source.toleranceMode === 'relative';
  const shares = relativeMode ? differences.map((margin, i) => (margin === 0 ? 0 : margin / Math.abs(b[i]!))) : differences;
  const meanShare = relativeMode ? mean(shares) : undefined;
  const bad = (margin: number) => (source.comparator === '>=' ? margin < 0 : margin > 0);
  const outside = differences.filter(bad).length;
  let worstIndex = 0;
  for (const [i, margin] of shares.entries()) if (source.comparator === '>=' ? margin < shares[worstIndex]! : margin > shares[worstIndex]!) worstIndex = i;
  const worst = { device: devices[worstIndex]!, margin: differences[worstIndex]!, ...(relativeMode ? { share: shares[worstIndex]! } : {}) };
  const candidateMedian = median(c);
  const baselineMedian = median(b);
  const bound = relativeBound(source, baselineMedian);
  const alpha = 1 - source.confidence;
  const evidence: RelativeEvidence = {
    metric: source.metric,
    unit,
    comparator: source.comparator,
    tolerance: source.tolerance,
    toleranceMode: source.toleranceMode,
    confidence: source.confidence,
    candidate: devices.map((device, i) => ({ device, value: c[i]! })),
    baseline: devices.map((device, i) => ({ device, value: b[i]! })),
    candidateMedian,
    baselineMedian,
    bound,
    shift,
    meanShift,
    ...(meanShare === undefined ? {} : { meanShare }),
    outside,
    worst,
    p,
    wilcoxon: { w: paired.w, z: paired.z, p: paired.p, method: paired.method },
    mannWhitney: { u: unpaired.u, z: unpaired.z, p: unpaired.p, method: unpaired.method },
  };
  const tolerance = source.toleranceMode === 'absolute' ? `${source.comparator === '>=' ? '−' : '+'} ${source.tolerance} ${unit}` : `× ${source.comparator === '>=' ? 1 - source.tolerance : 1 + source.tolerance}`;
  const good = source.comparator === '>=' ? '≥ 0' : '≤ 0';
  const notGood = source.comparator === '>=' ? '< 0' : '> 0';
  // What decides: the per-device margins. The medians of the values are context only (the
  // candidate median can sit below the bound of the baseline median while most devices are within
  // their own bounds, and the reverse).
  const pct = (share: number) => `${share > 0 ? '+' : ''}${fmt(share * 100)} %`;
  const outsideText = outside === 0 ? 'none outside tolerance' : `${outside} outside tolerance (worst ${worst.device}: ${fmt(worst.margin)} ${unit} past its bound${worst.share === undefined ? '' : `, ${pct(worst.share)} of its baseline`})`;
  const meanText = `mean ${fmt(meanShift)} ${unit}${meanShare === undefined ? '' : ` (${pct(meanShare)} of each device's baseline on average)`}`;
  const summary =
    `candidate ${source.metric} ${fmt(candidateMedian)} ${unit} vs baseline ${fmt(baselineMedian)} ${unit} (medians); ` +
    `per-device margin candidate − bound (baseline ${tolerance}): median ${fmt(shift)} ${unit}, ${meanText}, ${outsideText} ` +
    `on ${devices.length} devices (Wilcoxon signed-rank W+=${fmt(paired.w)} p=${fmt(paired.p)}, Mann-Whitney U=${fmt(unpaired.u)} p=${fmt(unpaired.p)}; p=${fmt(p)} for both)`;
  if (p < alpha) return { phase: 'Failed', message: `${summary}: significantly worse at confidence ${source.confidence}`, evidence };
  const fineMedian = !bad(shift);
  // The mean of margins that cancel out (a miss and a hit) may be a few ulps off 0: that is 0.
  // Not Math.max(...values): spread as arguments, a large fleet's values overflow the stack.
  const largest = (values: readonly number[]) => values.reduce((max, value) => Math.max(max, Math.abs(value)), -Infinity);
  const scale = relativeMode ? largest(shares) : Math.max(largest(cs), largest(bounds));
  const decisiveMean = meanShare ?? meanShift;
  // NaN: shares of +∞ and −∞ (baselines of 0): not on the good side.
  const fineMean = !Number.isNaN(decisiveMean) && (!bad(decisiveMean) || (Number.isFinite(scale) && Math.abs(decisiveMean) <= ROUNDING_NOISE * scale));
  if (fineMedian && fineMean) return { phase: 'Successful', message: `${summary}: within tolerance (median and mean margin ${good})`, evidence };
  const why = fineMedian
    ? `mean margin ${notGood}: ${outside} device${outside === 1 ? '' : 's'} outside tolerance lose${outside === 1 ? 's' : ''} more than the others are within it`
    : `median margin ${notGood}: at most half the devices are within tolerance`;
  return { phase: 'Inconclusive', message: `${summary}: outside tolerance but not significant at confidence ${source.confidence} (${why})`, evidence };
}

/** How close, relative to their size, two values are the same but for floating-point rounding. */
export const ROUNDING_NOISE = 1e-9;

/**
 * `values` with those that differ by at most ROUNDING_NOISE × their magnitude from the next
 * smaller one made equal to it (the smallest of such a run stands for all): arithmetic on per-device
 * values (percent from ratios, ms from seconds, baseline ± tolerance) leaves ulps of noise, which
 * would otherwise decide the sign of a difference that is 0, and rank a tie.
 */
export function withoutRoundingNoise(values: readonly number[]): number[] {
  const order = values.map((_, i) => i).sort((i, j) => values[i]! - values[j]!);
  const out = [...values];
  let anchor = Number.NaN;
  let previous = Number.NaN;
  for (const i of order) {
    const value = values[i]!;
    if (value - previous <= ROUNDING_NOISE * Math.max(Math.abs(value), Math.abs(previous))) out[i] = anchor;
    else anchor = value;
    previous = value;
  }
  return out;
}

function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}

/** The largest value of a relative metric, in the check's unit (percentages); undefined: unbounded. */
const RELATIVE_MAX: Readonly<Record<RelativeMetricName, number | undefined>> = { accuracy: 100, error_rate: 100, mse: undefined, latency_p95: undefined };

/**
 * Why the check's tolerance makes it unable to fail (or all but), else null: a warning, not an
 * error (the spec may mean it). Every metric is ≥ 0, accuracy and error rate ≤ 100. A relative
 * ≥ tolerance of 1 or more is refused by the spec's validation already.
 * - absolute, accuracy or error rate, tolerance ≥ 100: every bound is outside 0-100, never failing;
 * - absolute, accuracy or error rate, tolerance ≥ 50; relative ≤ with tolerance ≥ 1 (twice the
 *   baseline passes); relative ≥ with tolerance ≥ 0.5 (half the baseline passes): hardly failing.
 */
export function relativeToleranceProblem(source: Pick<RelativeSource, 'metric' | 'comparator' | 'tolerance' | 'toleranceMode'>): string | null {
  const { metric, comparator, tolerance } = source;
  const unit = RELATIVE_DEFAULTS[metric].unit;
  const max = RELATIVE_MAX[metric];
  if (source.toleranceMode === 'absolute') {
    if (max === undefined) return null; // no scale to judge a tolerance in label units² or ms by
    const bound = comparator === '>=' ? `baseline − ${tolerance}` : `baseline + ${tolerance}`;
    if (tolerance >= max) {
      const edge = comparator === '>=' ? `at most 0 ${unit} whatever the baseline (0-${max}), and no ${metric} is below 0` : `at least ${max} ${unit} whatever the baseline (0-${max}), and no ${metric} is above ${max}`;
      return `tolerance ${tolerance} ${unit}: the bound (${bound}) is ${edge}, so the check can never fail`;
    }
    if (tolerance >= max / 2) return `tolerance ${tolerance} ${unit} accepts a candidate ${tolerance} ${unit} worse than its baseline (of 0-${max}), so the check can hardly fail`;
    return null;
  }
  if (comparator === '<=' && tolerance >= 1) return `relative tolerance ${tolerance} accepts a candidate up to ${1 + tolerance}× its baseline ${metric}, so the check can hardly fail`;
  if (comparator === '>=' && tolerance >= 0.5 && tolerance < 1) return `relative tolerance ${tolerance} accepts a candidate down to ${fmt(1 - tolerance)}× its baseline ${metric}, so the check can hardly fail`;
  return null;
}
