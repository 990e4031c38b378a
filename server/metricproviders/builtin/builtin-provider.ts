import { MetricProviderError, type MetricProvider, type QueryContext, type QueryResult } from '../metric-provider.ts';
import type { ReportHistory } from '../report-history.ts';
import type { ExportedSeriesWithdrawals } from '../report-metrics-exporter.ts';
import { evaluatePromql, LOOKBACK_MS } from './promql-evaluator.ts';
import { longestRangeMs, parsePromql, PromqlError } from './promql-parser.ts';
import type { RegistrySeriesRecorder } from './registry-series-recorder.ts';
import { reportSeries } from './report-series.ts';
import { InMemorySeriesSet, seriesKey, type Series } from './series-set.ts';

/**
 * The embedded provider, used when no Prometheus is configured: the same PromQL metric
 * definitions, evaluated over the server's own prom-client series (through a
 * RegistrySeriesRecorder, scraped at each query) and the per-device report history. Supports the
 * subset of PromQL documented in promql-parser.ts; anything else is an Error measurement naming
 * the construct.
 */
export interface BuiltinProviderOptions {
  readonly recorder?: RegistrySeriesRecorder;
  readonly history?: ReportHistory;
  /** The fleet label the server's exporter gives its series (see DEVICE_REPORT_LABELS): history's series get it too. */
  readonly fleet?: string;
  /** The server's exporter: history's series of a label set it stopped exporting are stale from then on. */
  readonly withdrawals?: ExportedSeriesWithdrawals;
}

export class BuiltinProvider implements MetricProvider {
  readonly name = 'builtin';
  readonly #recorder: RegistrySeriesRecorder | undefined;
  readonly #history: ReportHistory | undefined;
  readonly #fleet: string | undefined;
  readonly #withdrawals: ExportedSeriesWithdrawals | undefined;

  constructor(options: BuiltinProviderOptions) {
    this.#recorder = options.recorder;
    this.#history = options.history;
    this.#fleet = options.fleet;
    this.#withdrawals = options.withdrawals;
  }

  async query(query: string, context: QueryContext): Promise<QueryResult> {
    let expr;
    try {
      expr = parsePromql(query);
    } catch (error) {
      if (error instanceof PromqlError) throw new MetricProviderError(this.name, `bad query: ${error.message}`);
      throw error;
    }
    const reach = Math.max(longestRangeMs(expr), LOOKBACK_MS) + 1;
    let series: Series[];
    let now: number;
    try {
      ({ series, at: now } = await withDeadline(this.#read(context.now, reach), context, this.name));
    } catch (error) {
      if (error instanceof MetricProviderError) throw error;
      throw new MetricProviderError(this.name, `cannot read series: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    try {
      const value = evaluatePromql(expr, new InMemorySeriesSet(series), now);
      return value.type === 'scalar'
        ? { resultType: 'scalar', samples: [{ labels: {}, value: value.value }] }
        : { resultType: 'vector', samples: value.samples };
    } catch (error) {
      if (error instanceof PromqlError) throw new MetricProviderError(this.name, error.message);
      throw error;
    }
  }

  /**
   * The server's own series, then the report history's for the label sets they lack: the
   * server exports the same device reports it keeps in history, and the two must not count
   * twice (twice the samples, or many-to-one matches in a division). History fills in what the
   * recorder does not hold (past its series limit; a restart's reports before the store's totals
   * are exported again); a label set the server stopped exporting (a dropped candidate, a revoked
   * device) gets a staleness marker where it stopped, as Prometheus' next scrape gives it, so an
   * instant selector no longer sees it while range functions still see its reports.
   */
  async #read(now: Date, reachMs: number): Promise<{ series: Series[]; at: number }> {
    const series: Series[] = [];
    // The evaluation time: the query's, or the recorder's latest scrape if a concurrent
    // measurement's scrape came first with a later time (milliseconds later).
    let at = now.getTime();
    if (this.#recorder) {
      at = await this.#recorder.scrape(now);
      for (const entry of this.#recorder.series()) series.push(entry);
    }
    if (this.#history) {
      const recorded = new Set(series.map((entry) => seriesKey(entry.labels)));
      const reports = await this.#history.reports({ since: new Date(at - reachMs), until: new Date(at) });
      // A loop, not push(...): a fleet's worth of series (100k+) overflows the call stack as arguments.
      for (const entry of reportSeries(reports, this.#fleet)) if (!recorded.has(seriesKey(entry.labels))) series.push(this.#markWithdrawn(entry));
    }
    return { series, at };
  }

  /** The history series with a staleness marker at the time the server stopped exporting its label set, if it did. */
  #markWithdrawn(entry: Series): Series {
    const withdrawn = this.#withdrawals?.withdrawnAt(entry.labels);
    if (withdrawn === undefined) return entry;
    const before = entry.points.filter((point) => point.t <= withdrawn);
    if (before.length === 0) return entry; // every report came after it: nothing of it was withdrawn
    const after = entry.points.filter((point) => point.t > withdrawn);
    return { labels: entry.labels, points: [...before, { t: withdrawn, v: Number.NaN, stale: true }, ...after] };
  }
}

/** `work`, or a MetricProviderError when the query's timeout passes or its signal aborts first (a hung store). */
async function withDeadline<T>(work: Promise<T>, context: QueryContext, provider: string): Promise<T> {
  const timeoutMs = context.timeoutMs;
  if (timeoutMs === undefined && !context.signal) return work;
  let cancel = () => {};
  const stopped = new Promise<never>((_, reject) => {
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => reject(new MetricProviderError(provider, `timed out after ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => reject(new MetricProviderError(provider, 'aborted'));
    context.signal?.addEventListener('abort', onAbort, { once: true });
    if (context.signal?.aborted) onAbort();
    cancel = () => {
      clearTimeout(timer);
      context.signal?.removeEventListener('abort', onAbort);
    };
  });
  work.catch(() => {}); // a read that fails after the deadline is not an unhandled rejection
  try {
    return await Promise.race([work, stopped]);
  } finally {
    cancel();
  }
}
