import { labelMatches, type LabelMatcher } from './promql-parser.ts';

/**
 * A time series: labels (with `__name__`) and its points in ascending time (ms). A `stale` point
 * is Prometheus' staleness marker: the series was gone from a scrape at `t` (its `v` is NaN), so
 * instant selectors see nothing of it from then on and range functions skip the marker.
 */
export interface SeriesPoint {
  readonly t: number;
  readonly v: number;
  readonly stale?: true;
  /**
   * For a counter synthesized from report history: the count this point's report added. Such a
   * counter's increase over a range is the sum of its points' counts there, not the growth from
   * the range's first point (whose own count would be lost, and with it a lone report's).
   */
  readonly count?: number;
}

export interface Series {
  readonly labels: Readonly<Record<string, string>>;
  readonly points: readonly SeriesPoint[];
}

/** A sync, in-memory snapshot of series the PromQL evaluator reads. */
export interface SeriesSet {
  select(matchers: readonly LabelMatcher[], startMs: number, endMs: number): Series[];
}

/** Snapshots from several sources (the registry recorder, report history) as one set. */
export class InMemorySeriesSet implements SeriesSet {
  readonly #series: Series[];

  constructor(series: readonly Series[]) {
    this.#series = [...series];
  }

  select(matchers: readonly LabelMatcher[], startMs: number, endMs: number): Series[] {
    const selected: Series[] = [];
    for (const series of this.#series) {
      if (!matchers.every((matcher) => labelMatches(matcher, series.labels[matcher.label] ?? ''))) continue;
      const points = series.points.filter((point) => point.t >= startMs && point.t <= endMs);
      if (points.length > 0) selected.push({ labels: series.labels, points });
    }
    return selected;
  }
}

export function seriesKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.keys(labels).sort().map((key) => [key, labels[key]]));
}
