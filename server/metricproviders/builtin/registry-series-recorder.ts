import type { Registry } from 'prom-client';
import { seriesKey, type Series, type SeriesPoint } from './series-set.ts';

/**
 * Keeps a short history of a prom-client Registry's series, as an embedded Prometheus would:
 * each scrape() appends the current value of every series (histogram `_bucket`/`_sum`/`_count`
 * and summary series included), and points older than the retention are dropped. rate() and
 * increase() over registry counters need at least two scrapes within the range. A series gone
 * from the registry since the previous scrape (a dropped candidate's, a revoked device's) gets a
 * staleness marker, as Prometheus writes one: queries no longer see it, as they would not there.
 */
export interface RegistrySeriesRecorderOptions {
  readonly retentionMs?: number;
  /** Refuse to track more series than this (guards memory against label explosions). */
  readonly maxSeries?: number;
  /** Called once, when a series is first left out for the limit (the server logs it). */
  readonly onLimit?: (maxSeries: number) => void;
}

export class RegistrySeriesRecorder {
  readonly #registry: Registry;
  readonly #retentionMs: number;
  readonly #maxSeries: number;
  readonly #onLimit: ((maxSeries: number) => void) | undefined;
  #limitReported = false;
  #lastScrapeMs = Number.NEGATIVE_INFINITY;
  readonly #series = new Map<string, { labels: Record<string, string>; points: SeriesPoint[] }>();

  constructor(registry: Registry, options: RegistrySeriesRecorderOptions = {}) {
    this.#registry = registry;
    this.#retentionMs = options.retentionMs ?? 60 * 60_000;
    this.#maxSeries = options.maxSeries ?? 50_000;
    this.#onLimit = options.onLimit;
  }

  /**
   * Appends every series' current value and returns the time it is recorded at: `now`, or the
   * latest scrape's time if that is later. Measurements of one analysis step run concurrently,
   * their `now`s milliseconds apart and their scrapes in any order; a scrape stamped before the
   * latest point could be neither appended (the query at that earlier `now` then saw only the
   * previous round's points, outside its window: "too few samples") nor inserted (a counter read
   * later but stamped earlier would look reset). The query evaluates at the returned time instead.
   */
  async scrape(now: Date): Promise<number> {
    const metrics = await this.#registry.getMetricsAsJSON();
    const t = Math.max(now.getTime(), this.#lastScrapeMs);
    this.#lastScrapeMs = t;
    const seen = new Set<string>();
    for (const metric of metrics) {
      for (const value of metric.values) {
        const name = (value as { metricName?: string }).metricName ?? metric.name;
        const labels: Record<string, string> = { __name__: name };
        for (const [key, label] of Object.entries(value.labels)) if (label !== undefined) labels[key] = String(label);
        const key = seriesKey(labels);
        seen.add(key);
        let entry = this.#series.get(key);
        if (!entry) {
          if (this.#series.size >= this.#maxSeries) {
            if (!this.#limitReported) this.#onLimit?.(this.#maxSeries);
            this.#limitReported = true;
            continue;
          }
          entry = { labels, points: [] };
          this.#series.set(key, entry);
        }
        const last = entry.points.at(-1);
        if (last && last.t === t) entry.points[entry.points.length - 1] = { t, v: value.value };
        else entry.points.push({ t, v: value.value });
      }
    }
    for (const [key, entry] of this.#series) {
      const last = entry.points.at(-1);
      if (seen.has(key) || !last || last.stale) continue;
      if (last.t === t) entry.points.pop(); // gone again within the same instant
      entry.points.push({ t, v: Number.NaN, stale: true });
    }
    const oldest = t - this.#retentionMs;
    for (const [key, entry] of this.#series) {
      while (entry.points.length > 0 && entry.points[0]!.t < oldest) entry.points.shift();
      if (entry.points.length === 0) this.#series.delete(key);
    }
    return t;
  }

  series(): Series[] {
    return [...this.#series.values()].map((entry) => ({ labels: entry.labels, points: [...entry.points] }));
  }
}
