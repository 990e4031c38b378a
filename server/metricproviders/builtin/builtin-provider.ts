import { MetricProviderError, type MetricProvider, type QueryContext, type QueryResult } from '../metric-provider.ts';
import type { ReportHistory } from '../report-history.ts';
import { evaluatePromql, LOOKBACK_MS } from './promql-evaluator.ts';
import { longestRangeMs, parsePromql, PromqlError } from './promql-parser.ts';
import type { RegistrySeriesRecorder } from './registry-series-recorder.ts';
import { reportSeries } from './report-series.ts';
import { InMemorySeriesSet, type Series } from './series-set.ts';

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
}

export class BuiltinProvider implements MetricProvider {
  readonly name = 'builtin';
  readonly #recorder: RegistrySeriesRecorder | undefined;
  readonly #history: ReportHistory | undefined;

  constructor(options: BuiltinProviderOptions) {
    this.#recorder = options.recorder;
    this.#history = options.history;
  }

  async query(query: string, context: QueryContext): Promise<QueryResult> {
    let expr;
    try {
      expr = parsePromql(query);
    } catch (error) {
      if (error instanceof PromqlError) throw new MetricProviderError(this.name, `bad query: ${error.message}`);
      throw error;
    }
    const now = context.now.getTime();
    const since = new Date(now - Math.max(longestRangeMs(expr), LOOKBACK_MS) - 1);
    const series: Series[] = [];
    try {
      if (this.#recorder) {
        await this.#recorder.scrape(context.now);
        series.push(...this.#recorder.series());
      }
      if (this.#history) series.push(...reportSeries(await this.#history.reports({ since, until: context.now })));
    } catch (error) {
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
}
