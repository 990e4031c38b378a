import { parseDecimal } from '../../shared/util/numbers.ts';
import { MetricProviderError, type MetricProvider, type QueryContext, type QueryResult, type Sample } from './metric-provider.ts';
import { parsePrometheusUrl, redactCredentials } from './prometheus-url.ts';

/**
 * PromQL instant queries against a real Prometheus HTTP API (`GET /api/v1/query`). Instant
 * vectors and scalars are results; a range vector or string is an error (wrap a range selector
 * in a function such as rate()). Network failures, timeouts (also while the answer is still
 * arriving), redirects, HTTP errors, answers over MAX_BODY_BYTES, malformed answers and values,
 * and Prometheus' own `status: "error"` answers all become MetricProviderError.
 */
export interface PrometheusProviderOptions {
  /**
   * e.g. http://127.0.0.1:9090 (a path prefix such as /prometheus is kept). Credentials in it
   * (https://user:password@host) are sent as basic auth and never appear in messages.
   */
  readonly url: string;
  readonly timeoutMs?: number;
  /** Extra request headers, e.g. Authorization. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly fetch?: typeof fetch;
}

const DEFAULT_TIMEOUT_MS = 10_000;

interface PrometheusAnswer {
  status?: unknown;
  errorType?: unknown;
  error?: unknown;
  data?: { resultType?: unknown; result?: unknown } | null;
  warnings?: unknown;
  infos?: unknown;
}

export class PrometheusProvider implements MetricProvider {
  readonly name = 'prometheus';
  readonly #base: URL;
  readonly #timeoutMs: number;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #fetch: typeof fetch;

  constructor(options: PrometheusProviderOptions) {
    const { base, authorization } = parsePrometheusUrl(options.url);
    this.#base = base;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // Credentials in the URL are sent as basic auth; an Authorization in `headers` wins.
    const explicit = Object.keys(options.headers ?? {}).some((name) => name.toLowerCase() === 'authorization');
    this.#headers = { ...(authorization && !explicit ? { authorization } : {}), ...options.headers };
    this.#fetch = options.fetch ?? fetch;
  }

  async query(query: string, context: QueryContext): Promise<QueryResult> {
    const url = new URL('api/v1/query', this.#base);
    const timeoutMs = context.timeoutMs ?? this.#timeoutMs;
    const body = new URLSearchParams({ query, time: (context.now.getTime() / 1000).toFixed(3), timeout: `${Math.max(1, Math.floor(timeoutMs / 1000))}s` });
    const signals = [AbortSignal.timeout(timeoutMs), ...(context.signal ? [context.signal] : [])];
    const signal = AbortSignal.any(signals);
    const timedOutMessage = `query timed out after ${timeoutMs} ms (${this.#base.origin})`;
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...this.#headers },
        body,
        signal,
        // A redirect would turn the POST into a GET without the query (301-303) or send the
        // headers elsewhere; the configured URL must be Prometheus itself.
        redirect: 'manual',
      });
    } catch (error) {
      throw new MetricProviderError(this.name, isAbort(error) ? timedOutMessage : `cannot reach ${this.#base.origin}: ${redactCredentials(describeFetchError(error, this.#base))}`, { cause: error });
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel().catch(() => {});
      const location = response.headers.get('location');
      throw new MetricProviderError(this.name, `HTTP ${response.status} redirect${location ? ` to ${redactCredentials(location).slice(0, 200)}` : ''}; set --prometheus-url to the address Prometheus answers on`);
    }
    let text: string;
    try {
      text = await readBody(response, MAX_BODY_BYTES);
    } catch (error) {
      if (error instanceof MetricProviderError) throw error;
      throw new MetricProviderError(this.name, isAbort(error) || signal.aborted ? `${timedOutMessage} while reading the answer` : `HTTP ${response.status}: reading the answer failed: ${describeFetchError(error, this.#base)}`, { cause: error });
    }
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new MetricProviderError(this.name, `HTTP ${response.status} with a body that is not JSON: ${printable(text.slice(0, 200))}`);
    }
    if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) {
      throw new MetricProviderError(this.name, `HTTP ${response.status} with JSON that is not a Prometheus API answer: ${printable(text.slice(0, 200))}`);
    }
    const parsed = answer as PrometheusAnswer;
    if (parsed.status !== 'success') {
      const errorType = typeof parsed.errorType === 'string' ? parsed.errorType.slice(0, 100) : `HTTP ${response.status}`;
      const message = typeof parsed.error === 'string' ? parsed.error.slice(0, 500) : parsed.status === undefined ? 'not a Prometheus API answer (no status)' : 'query failed';
      throw new MetricProviderError(this.name, `${errorType}: ${message}`);
    }
    if (!response.ok) {
      // A proxy or cache answering with an error status must not pass its body off as a result.
      throw new MetricProviderError(this.name, `HTTP ${response.status} (${response.statusText || 'error'}) despite status "success"`);
    }
    const result = toResult(parsed, this.name, context.now.getTime() / 1000);
    // A successful answer may still be partial (a Thanos/Mimir store unavailable): its warnings go with it.
    const warnings = annotations(parsed.warnings);
    const infos = annotations(parsed.infos);
    return { ...result, ...(warnings.length > 0 ? { warnings } : {}), ...(infos.length > 0 ? { infos } : {}) };
  }
}

/** At most this many annotations of one kind are kept, each cut to MAX_ANNOTATION_CHARS. */
export const MAX_ANNOTATIONS = 5;
const MAX_ANNOTATION_CHARS = 300;

/**
 * The API's `warnings` or `infos` as printable lines (the backend's text ends up in the decision
 * log and stored reasons), deduplicated, at most MAX_ANNOTATIONS (the last says how many more
 * there were). The API sends a list of strings; a lone string, or entries that are not strings,
 * are kept all the same (as text): a warning is never dropped for its form.
 */
function annotations(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const entries: unknown[] = Array.isArray(value) ? value : [value];
  const line = (entry: unknown) => (typeof entry === 'string' ? entry : String(JSON.stringify(entry))).replace(/[\s\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  const texts = [...new Set(entries.map(line).filter((entry) => entry !== '' && entry !== 'null'))];
  const cut = texts.map((text) => (text.length > MAX_ANNOTATION_CHARS ? `${text.slice(0, MAX_ANNOTATION_CHARS)}…` : text).toWellFormed());
  if (cut.length <= MAX_ANNOTATIONS) return cut;
  return [...cut.slice(0, MAX_ANNOTATIONS - 1), `${cut.length - MAX_ANNOTATIONS + 1} more`];
}

/** The largest answer read (a query over the whole fleet is far below); more is an error. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** The body as text, at most `limit` bytes; reading stops (and the connection closes) beyond. */
async function readBody(response: Response, limit: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new MetricProviderError('prometheus', `HTTP ${response.status} with an answer larger than ${limit / (1024 * 1024)} MiB`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
}

/** Control characters out, so a binary or HTML body stays one readable log line. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

function toResult(answer: PrometheusAnswer, provider: string, evaluatedAt: number): QueryResult {
  const data = answer.data !== null && typeof answer.data === 'object' ? answer.data : {};
  const { resultType, result } = data;
  if (resultType === 'scalar') {
    return { resultType: 'scalar', samples: [{ labels: {}, value: parseValue(result, provider, evaluatedAt) }] };
  }
  if (resultType === 'vector') {
    if (!Array.isArray(result)) throw new MetricProviderError(provider, 'malformed vector result: not a list');
    // Prometheus never answers with one label set twice; a proxy merging HA replicas without
    // deduplication does, and every series counted twice would pass minSamples at half the samples.
    const seen = new Map<string, number>();
    const samples: Sample[] = result.map((entry: unknown, index) => {
      if (entry === null || typeof entry !== 'object') throw new MetricProviderError(provider, `malformed vector result: entry ${index} is not an object`);
      const { metric, value } = entry as { metric?: unknown; value?: unknown };
      const labels = parseLabels(metric, index, provider);
      const key = labelSetKey(labels);
      const first = seen.get(key);
      if (first !== undefined) throw new MetricProviderError(provider, `malformed vector result: entries ${first} and ${index} have the same labels ${printable(key.slice(0, 200))} (a proxy merging replicas without deduplication?)`);
      seen.set(key, index);
      return { labels, value: parseValue(value, provider, evaluatedAt) };
    });
    return { resultType: 'vector', samples };
  }
  if (resultType === 'matrix') throw new MetricProviderError(provider, 'the query returns a range vector; wrap it in a function such as rate() or avg_over_time()', { queryFault: true });
  if (resultType === 'string') throw new MetricProviderError(provider, 'the query returns a string; a condition reads numbers (a vector or a scalar)', { queryFault: true });
  throw new MetricProviderError(provider, `unsupported result type "${String(resultType).slice(0, 50)}"`);
}

/** The label set as one comparable string: `{a="1",b="2"}`, names sorted. */
function labelSetKey(labels: Readonly<Record<string, string>>): string {
  return `{${Object.keys(labels).sort().map((name) => `${name}=${JSON.stringify(labels[name])}`).join(',')}}`;
}

function parseLabels(metric: unknown, index: number, provider: string): Record<string, string> {
  if (metric === undefined) return {};
  if (metric === null || typeof metric !== 'object' || Array.isArray(metric)) throw new MetricProviderError(provider, `malformed vector result: entry ${index} has no label set`);
  const entries = Object.entries(metric);
  for (const [name, value] of entries) {
    if (typeof value !== 'string') throw new MetricProviderError(provider, `malformed vector result: label "${name.slice(0, 100)}" of entry ${index} is not a string`);
  }
  // fromEntries defines each label: one named __proto__ stays a label instead of being dropped.
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * How far a sample's timestamp may be from the evaluation time the query asked for (`time`).
 * Prometheus answers an instant query at exactly that time; a backend that rounds or offsets it
 * stays well within this. An answer further off was not evaluated for this query: a cache between
 * the server and Prometheus replaying an old answer, which must not decide a rollout.
 */
export const MAX_SAMPLE_TIME_SKEW_S = 300;

/** `[ <unix time>, "<value>" ]`: the time a number (seconds) near `evaluatedAt`; values are strings and may be NaN or ±Inf. Anything else is an error, never 0. */
function parseValue(pair: unknown, provider: string, evaluatedAt: number): number {
  if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[1] !== 'string') throw new MetricProviderError(provider, 'malformed sample value');
  if (typeof pair[0] !== 'number' || !Number.isFinite(pair[0])) throw new MetricProviderError(provider, `malformed sample: its timestamp ${printable(String(JSON.stringify(pair[0])).slice(0, 50))} is not a number of seconds`);
  const value = sampleValue(pair[1], provider);
  const skew = pair[0] - evaluatedAt;
  if (Math.abs(skew) > MAX_SAMPLE_TIME_SKEW_S) {
    throw new MetricProviderError(provider, `stale answer: a sample is timed ${Math.round(Math.abs(skew))} s ${skew < 0 ? 'before' : 'after'} the time the query asked for (a cache between the server and Prometheus?)`);
  }
  return value;
}

/** A sample's value: NaN, ±Inf, or a Go float in decimal or exponent notation. */
function sampleValue(text: string, provider: string): number {
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  const value = text.length > 400 ? Number.NaN : parseDecimal(text);
  if (Number.isNaN(value)) throw new MetricProviderError(provider, `malformed sample value "${printable(text.slice(0, 50))}${text.length > 50 ? '…' : ''}": not a number`);
  return value;
}

function describeFetchError(error: unknown, url: URL): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    // fetch's own refusal, before any connection: the fetch standard blocks some ports (6000, 10080, ...).
    if (cause?.message === 'bad port') return `Node's fetch refuses to connect to port ${url.port} (one of the ports the fetch standard blocks): serve Prometheus on another port`;
    return cause?.code ?? cause?.message ?? error.message;
  }
  return String(error);
}
