import type { Sample } from '../metric-provider.ts';
import { PromqlError, type Aggregation, type ArithmeticOperator, type ComparisonOperator, type PromExpr, type RangeFunction } from './promql-parser.ts';
import { seriesKey, type Series, type SeriesSet } from './series-set.ts';

/**
 * Evaluates a parsed PromQL expression at one instant over a SeriesSet, following Prometheus'
 * semantics for the supported subset, with documented simplifications:
 *
 * - instant selectors take each series' latest point within the lookback (5 minutes);
 * - increase() is the counter's growth between the first and last points of the range, with
 *   counter resets handled, and without Prometheus' extrapolation to the range boundaries;
 *   rate() is that increase divided by the range in seconds; over a counter synthesized from
 *   report history, increase() is the sum of the counts of the reports in the range;
 * - histogram_quantile() interpolates linearly within the bucket, as Prometheus does.
 */
export type PromValue = { readonly type: 'scalar'; readonly value: number } | { readonly type: 'vector'; readonly samples: readonly Sample[] };

export const LOOKBACK_MS = 5 * 60_000;

export function evaluatePromql(expr: PromExpr, series: SeriesSet, nowMs: number): PromValue {
  return new Evaluator(series, nowMs).evaluate(expr);
}

class Evaluator {
  readonly #series: SeriesSet;
  readonly #now: number;

  constructor(series: SeriesSet, now: number) {
    this.#series = series;
    this.#now = now;
  }

  evaluate(expr: PromExpr): PromValue {
    switch (expr.type) {
      case 'number':
        return { type: 'scalar', value: expr.value };
      case 'selector': {
        if (expr.rangeMs !== undefined) throw new PromqlError(`a range selector (${expr.text}) must be the argument of a range function such as rate()`);
        // A series whose latest point is a staleness marker is gone, as in Prometheus.
        const samples = this.#series
          .select(expr.matchers, this.#now - LOOKBACK_MS, this.#now)
          .flatMap((s) => (s.points.at(-1)!.stale ? [] : [{ labels: s.labels, value: s.points.at(-1)!.v }]));
        return { type: 'vector', samples };
      }
      case 'range-call': {
        const range = expr.selector.rangeMs!;
        const selected = this.#series.select(expr.selector.matchers, this.#now - range, this.#now);
        const samples: Sample[] = [];
        for (const selectedSeries of selected) {
          // Range functions skip staleness markers, as Prometheus does.
          const s = { labels: selectedSeries.labels, points: selectedSeries.points.filter((point) => !point.stale) };
          if (s.points.length === 0) continue;
          const value = rangeFunction(expr.fn, s, range);
          if (value !== undefined) samples.push({ labels: dropName(s.labels), value });
        }
        return { type: 'vector', samples };
      }
      case 'aggregate':
        return { type: 'vector', samples: aggregate(expr.op, expr.grouping, this.#vector(this.evaluate(expr.expr), expr.op)) };
      case 'call':
        return this.#call(expr);
      case 'negate': {
        const value = this.evaluate(expr.expr);
        if (value.type === 'scalar') return { type: 'scalar', value: -value.value };
        return { type: 'vector', samples: value.samples.map((s) => ({ labels: dropName(s.labels), value: -s.value })) };
      }
      case 'binary':
        return this.#binary(expr);
    }
  }

  #vector(value: PromValue, context: string): readonly Sample[] {
    if (value.type !== 'vector') throw new PromqlError(`${context}() needs an instant vector, not a scalar`);
    return value.samples;
  }

  #call(expr: Extract<PromExpr, { type: 'call' }>): PromValue {
    switch (expr.fn) {
      case 'abs': {
        const value = this.evaluate(expr.args[0]!);
        if (value.type === 'scalar') throw new PromqlError('abs() needs an instant vector');
        return { type: 'vector', samples: value.samples.map((s) => ({ labels: dropName(s.labels), value: Math.abs(s.value) })) };
      }
      case 'scalar': {
        const samples = this.#vector(this.evaluate(expr.args[0]!), 'scalar');
        return { type: 'scalar', value: samples.length === 1 ? samples[0]!.value : Number.NaN };
      }
      case 'vector': {
        const value = this.evaluate(expr.args[0]!);
        if (value.type !== 'scalar') throw new PromqlError('vector() needs a scalar');
        return { type: 'vector', samples: [{ labels: {}, value: value.value }] };
      }
      case 'histogram_quantile': {
        const phi = this.evaluate(expr.args[0]!);
        if (phi.type !== 'scalar') throw new PromqlError('histogram_quantile() needs a scalar quantile first');
        return { type: 'vector', samples: histogramQuantile(phi.value, this.#vector(this.evaluate(expr.args[1]!), 'histogram_quantile')) };
      }
    }
  }

  #binary(expr: Extract<PromExpr, { type: 'binary' }>): PromValue {
    const left = this.evaluate(expr.left);
    const right = this.evaluate(expr.right);
    const op = expr.op;
    if (op === 'and') return { type: 'vector', samples: intersect(left, right, expr.matching) };
    const comparison = isComparison(op);
    if (left.type === 'scalar' && right.type === 'scalar') {
      if (comparison && !expr.bool) throw new PromqlError('comparisons between scalars need "bool"');
      return { type: 'scalar', value: apply(op, left.value, right.value) };
    }
    const keepName = comparison && !expr.bool;
    const result = (labels: Readonly<Record<string, string>>, l: number, r: number, sampleValue: number): Sample | undefined => {
      const value = apply(op, l, r);
      if (!comparison) return { labels: dropName(labels), value };
      if (expr.bool) return { labels: dropName(labels), value };
      return value === 1 ? { labels: keepName ? labels : dropName(labels), value: sampleValue } : undefined;
    };
    if (left.type === 'vector' && right.type === 'scalar') {
      return { type: 'vector', samples: left.samples.flatMap((s) => result(s.labels, s.value, right.value, s.value) ?? []) };
    }
    if (left.type === 'scalar' && right.type === 'vector') {
      return { type: 'vector', samples: right.samples.flatMap((s) => result(s.labels, left.value, s.value, s.value) ?? []) };
    }
    // Both vectors: one-to-one matching.
    const matchLabels = (labels: Readonly<Record<string, string>>): Record<string, string> => {
      const out: Record<string, string> = {};
      for (const [key, value] of Object.entries(labels)) {
        if (key === '__name__') continue;
        if (expr.matching?.mode === 'on' && !expr.matching.labels.includes(key)) continue;
        if (expr.matching?.mode === 'ignoring' && expr.matching.labels.includes(key)) continue;
        out[key] = value;
      }
      return out;
    };
    const rightByKey = new Map<string, Sample>();
    for (const sample of (right as { samples: readonly Sample[] }).samples) {
      const key = seriesKey(matchLabels(sample.labels));
      if (rightByKey.has(key)) throw new PromqlError(`many-to-one matching: several right-hand series share the labels ${key}; aggregate first or use on(...)`);
      rightByKey.set(key, sample);
    }
    const samples: Sample[] = [];
    const seen = new Set<string>();
    for (const sample of (left as { samples: readonly Sample[] }).samples) {
      const matched = matchLabels(sample.labels);
      const key = seriesKey(matched);
      const other = rightByKey.get(key);
      if (!other) continue;
      if (seen.has(key)) throw new PromqlError(`many-to-one matching: several left-hand series share the labels ${key}; aggregate first or use on(...)`);
      seen.add(key);
      const labels = expr.matching?.mode === 'on' ? matched : keepName ? sample.labels : matched;
      const out = result(labels, sample.value, other.value, sample.value);
      if (out) samples.push(out);
    }
    return { type: 'vector', samples };
  }
}

/**
 * `left and right`: the left samples, as they are (name and value), whose labels (all but the
 * name, or those `on`/`ignoring` names) match a right sample's; several may match on either side.
 */
function intersect(left: PromValue, right: PromValue, matching: { readonly mode: 'on' | 'ignoring'; readonly labels: readonly string[] } | undefined): Sample[] {
  if (left.type !== 'vector' || right.type !== 'vector') throw new PromqlError('"and" needs an instant vector on both sides');
  const key = (labels: Readonly<Record<string, string>>): string => {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(labels)) {
      if (name === '__name__') continue;
      if (matching?.mode === 'on' && !matching.labels.includes(name)) continue;
      if (matching?.mode === 'ignoring' && matching.labels.includes(name)) continue;
      out[name] = value;
    }
    return seriesKey(out);
  };
  const present = new Set(right.samples.map((sample) => key(sample.labels)));
  return left.samples.filter((sample) => present.has(key(sample.labels)));
}

function isComparison(op: ArithmeticOperator | ComparisonOperator): op is ComparisonOperator {
  return ['==', '!=', '>', '<', '>=', '<='].includes(op);
}

function apply(op: ArithmeticOperator | ComparisonOperator, a: number, b: number): number {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    case '/': return a / b;
    case '%': return a % b;
    case '==': return a === b ? 1 : 0;
    case '!=': return a !== b ? 1 : 0;
    case '>': return a > b ? 1 : 0;
    case '<': return a < b ? 1 : 0;
    case '>=': return a >= b ? 1 : 0;
    case '<=': return a <= b ? 1 : 0;
  }
}

function dropName(labels: Readonly<Record<string, string>>): Record<string, string> {
  const { __name__: _name, ...rest } = labels;
  return rest;
}

function rangeFunction(fn: RangeFunction, series: Series, rangeMs: number): number | undefined {
  const values = series.points.map((p) => p.v);
  switch (fn) {
    case 'rate':
    case 'increase': {
      // A counter synthesized from report history: the sum of the counts of the reports in the
      // range (one is enough), whatever came before it.
      if (series.points.every((point) => point.count !== undefined)) {
        const sum = series.points.reduce((total, point) => total + point.count!, 0);
        return fn === 'increase' ? sum : sum / (rangeMs / 1000);
      }
      if (values.length < 2) return undefined;
      let growth = 0;
      for (let i = 1; i < values.length; i += 1) {
        const delta = values[i]! - values[i - 1]!;
        growth += delta >= 0 ? delta : values[i]!; // a reset restarts from 0
      }
      return fn === 'increase' ? growth : growth / (rangeMs / 1000);
    }
    case 'avg_over_time': return values.reduce((a, b) => a + b, 0) / values.length;
    case 'sum_over_time': return values.reduce((a, b) => a + b, 0);
    case 'min_over_time': return minOf(values);
    case 'max_over_time': return maxOf(values);
    case 'count_over_time': return values.length;
    case 'last_over_time': return values.at(-1);
  }
}

function aggregate(op: Aggregation, grouping: { mode: 'by' | 'without'; labels: readonly string[] } | undefined, samples: readonly Sample[]): Sample[] {
  const groups = new Map<string, { labels: Record<string, string>; values: number[] }>();
  for (const sample of samples) {
    const labels: Record<string, string> = {};
    if (grouping?.mode === 'by') {
      for (const label of grouping.labels) if (sample.labels[label] !== undefined) labels[label] = sample.labels[label]!;
    } else if (grouping?.mode === 'without') {
      for (const [key, value] of Object.entries(sample.labels)) if (key !== '__name__' && !grouping.labels.includes(key)) labels[key] = value;
    }
    const key = seriesKey(labels);
    const group = groups.get(key) ?? { labels, values: [] };
    group.values.push(sample.value);
    groups.set(key, group);
  }
  return [...groups.values()].map(({ labels, values }) => {
    switch (op) {
      case 'sum': return { labels, value: values.reduce((a, b) => a + b, 0) };
      case 'avg': return { labels, value: values.reduce((a, b) => a + b, 0) / values.length };
      case 'min': return { labels, value: minOf(values) };
      case 'max': return { labels, value: maxOf(values) };
      case 'count': return { labels, value: values.length };
    }
  });
}

/**
 * Prometheus' min and max (aggregations and _over_time): NaN only when every value is NaN.
 * A loop, not Math.min(...values): spreading a fleet's worth of series overflows the stack.
 */
function minOf(values: readonly number[]): number {
  let result = Number.NaN;
  for (const value of values) if (Number.isNaN(result) || value < result) result = value;
  return result;
}

function maxOf(values: readonly number[]): number {
  let result = Number.NaN;
  for (const value of values) if (Number.isNaN(result) || value > result) result = value;
  return result;
}

/** Prometheus' bucketQuantile over cumulative `le` buckets, grouped by every label but `le`. */
function histogramQuantile(phi: number, samples: readonly Sample[]): Sample[] {
  const groups = new Map<string, { labels: Record<string, string>; buckets: { le: number; count: number }[] }>();
  for (const sample of samples) {
    const le = sample.labels.le;
    if (le === undefined) continue;
    const upper = le === '+Inf' || le === 'Inf' ? Number.POSITIVE_INFINITY : Number(le);
    if (Number.isNaN(upper)) continue;
    const { le: _le, ...rest } = dropName(sample.labels);
    const key = seriesKey(rest);
    const group = groups.get(key) ?? { labels: rest, buckets: [] };
    group.buckets.push({ le: upper, count: sample.value });
    groups.set(key, group);
  }
  return [...groups.values()].map(({ labels, buckets }) => ({ labels, value: bucketQuantile(phi, buckets) }));
}

function bucketQuantile(phi: number, unsorted: { le: number; count: number }[]): number {
  if (phi < 0) return Number.NEGATIVE_INFINITY;
  if (phi > 1) return Number.POSITIVE_INFINITY;
  const buckets = [...unsorted].sort((a, b) => a.le - b.le);
  if (buckets.length < 2 || buckets.at(-1)!.le !== Number.POSITIVE_INFINITY) return Number.NaN;
  // Counts must be monotonic; Prometheus repairs small violations the same way.
  for (let i = 1; i < buckets.length; i += 1) buckets[i]!.count = Math.max(buckets[i]!.count, buckets[i - 1]!.count);
  const total = buckets.at(-1)!.count;
  if (total === 0 || Number.isNaN(total)) return Number.NaN;
  const rank = phi * total;
  let index = buckets.findIndex((bucket) => bucket.count >= rank);
  if (index === -1) index = buckets.length - 1;
  if (index === buckets.length - 1) return buckets[buckets.length - 2]!.le;
  if (index === 0 && buckets[0]!.le <= 0) return buckets[0]!.le;
  const lower = index === 0 ? 0 : buckets[index - 1]!.le;
  const below = index === 0 ? 0 : buckets[index - 1]!.count;
  const inBucket = buckets[index]!.count - below;
  return lower + (buckets[index]!.le - lower) * ((rank - below) / inBucket);
}
