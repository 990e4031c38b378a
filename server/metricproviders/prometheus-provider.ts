import { MetricProviderError, type MetricProvider, type QueryContext, type QueryResult, type Sample } from './metric-provider.ts';

/**
 * PromQL instant queries against a real Prometheus HTTP API (`GET /api/v1/query`). Instant
 * vectors and scalars are results; a range vector or string is an error (wrap a range selector
 * in a function such as rate()). Network failures, timeouts, HTTP errors and Prometheus' own
 * `status: "error"` answers all become MetricProviderError.
 */
export interface PrometheusProviderOptions {
  /** e.g. http://127.0.0.1:9090 (a path prefix such as /prometheus is kept). */
  readonly url: string;
  readonly timeoutMs?: number;
  /** Extra request headers, e.g. Authorization. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly fetch?: typeof fetch;
}

const DEFAULT_TIMEOUT_MS = 10_000;

interface PrometheusAnswer {
  status?: string;
  errorType?: string;
  error?: string;
  data?: { resultType?: string; result?: unknown };
}

export class PrometheusProvider implements MetricProvider {
  readonly name = 'prometheus';
  readonly #base: URL;
  readonly #timeoutMs: number;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #fetch: typeof fetch;

  constructor(options: PrometheusProviderOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new TypeError(`--prometheus-url: "${options.url}" is not a URL`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`--prometheus-url: must be http(s), not ${base.protocol}`);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.#base = base;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#headers = options.headers ?? {};
    this.#fetch = options.fetch ?? fetch;
  }

  async query(query: string, context: QueryContext): Promise<QueryResult> {
    const url = new URL('api/v1/query', this.#base);
    const timeoutMs = context.timeoutMs ?? this.#timeoutMs;
    const body = new URLSearchParams({ query, time: (context.now.getTime() / 1000).toFixed(3), timeout: `${Math.max(1, Math.floor(timeoutMs / 1000))}s` });
    const signals = [AbortSignal.timeout(timeoutMs), ...(context.signal ? [context.signal] : [])];
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...this.#headers },
        body,
        signal: AbortSignal.any(signals),
      });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      throw new MetricProviderError(this.name, timedOut ? `query timed out after ${timeoutMs} ms (${this.#base.origin})` : `cannot reach ${this.#base.origin}: ${describeFetchError(error)}`, { cause: error });
    }
    let answer: PrometheusAnswer;
    const text = await response.text().catch(() => '');
    try {
      answer = JSON.parse(text) as PrometheusAnswer;
    } catch {
      throw new MetricProviderError(this.name, `HTTP ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    if (answer.status !== 'success') {
      throw new MetricProviderError(this.name, `${answer.errorType ?? `HTTP ${response.status}`}: ${answer.error ?? 'query failed'}`);
    }
    return toResult(answer, this.name);
  }
}

function toResult(answer: PrometheusAnswer, provider: string): QueryResult {
  const { resultType, result } = answer.data ?? {};
  if (resultType === 'scalar') {
    return { resultType: 'scalar', samples: [{ labels: {}, value: parseValue(result, provider) }] };
  }
  if (resultType === 'vector') {
    if (!Array.isArray(result)) throw new MetricProviderError(provider, 'malformed vector result');
    const samples: Sample[] = result.map((entry: { metric?: Record<string, string>; value?: unknown }) => ({
      labels: entry.metric ?? {},
      value: parseValue(entry.value, provider),
    }));
    return { resultType: 'vector', samples };
  }
  if (resultType === 'matrix') throw new MetricProviderError(provider, 'the query returns a range vector; wrap it in a function such as rate() or avg_over_time()');
  throw new MetricProviderError(provider, `unsupported result type "${String(resultType)}"`);
}

/** `[ <unix time>, "<value>" ]`; values are strings and may be NaN or ±Inf. */
function parseValue(pair: unknown, provider: string): number {
  if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[1] !== 'string') throw new MetricProviderError(provider, 'malformed sample value');
  const text = pair[1];
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text); // "NaN" → NaN
}

function describeFetchError(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? error.message;
  }
  return String(error);
}
