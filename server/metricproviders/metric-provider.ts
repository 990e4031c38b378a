/**
 * Where analysis measurements come from. A provider runs an instant query at `now` and returns
 * samples with labels: an instant vector, or a scalar as one sample without labels. It throws
 * MetricProviderError for anything that prevents an answer (unreachable, timeout, bad query);
 * the analysis engine turns that into an Error measurement, never a crash.
 */
export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface QueryResult {
  readonly resultType: 'vector' | 'scalar';
  readonly samples: readonly Sample[];
  /**
   * The backend's warnings with a successful answer (Prometheus API `warnings`): above all a
   * partial response (Thanos, Mimir, Cortex: "2 of 3 store gateways unavailable"), whose samples
   * may lack series. A measurement shows them, and is never Successful on them. One printable line each.
   */
  readonly warnings?: readonly string[];
  /** The backend's informational notes (Prometheus API `infos`, e.g. "metric might not be a counter"): shown, no effect on the verdict. */
  readonly infos?: readonly string[];
}

export interface QueryContext {
  readonly now: Date;
  /** The measurement's arguments (already substituted into the query); for providers that want them. */
  readonly args?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface MetricProvider {
  /** `prometheus`, `builtin`: recorded with each measurement. */
  readonly name: string;
  query(query: string, context: QueryContext): Promise<QueryResult>;
}

const LINE_BREAKING = /\s*[\u0000-\u001f\u007f-\u009f\u2028\u2029][\s\u0000-\u001f\u007f-\u009f\u2028\u2029]*/g;

export class MetricProviderError extends Error {
  readonly provider: string;
  /**
   * The query itself is wrong whatever the data (it returns a range vector or a string, never a
   * result a condition reads): a rollout start refuses it rather than fail every measurement.
   */
  readonly queryFault: boolean;
  constructor(provider: string, message: string, options?: { cause?: unknown; queryFault?: boolean }) {
    // One printable line: the message comes partly from the backend, and ends up in logs, the
    // decision log and stored reasons (PostgreSQL refuses a NUL in text, for ever). Line breaks
    // beyond ASCII (NEL, U+2028, U+2029) break lines too, and half a surrogate pair (the
    // backend's "\ud800", or a cut quote) is no text at all: gRPC and UTF-8 cannot carry it.
    super(`${provider}: ${message}`.replace(LINE_BREAKING, ' ').toWellFormed(), options);
    this.name = 'MetricProviderError';
    this.provider = provider;
    this.queryFault = options?.queryFault ?? false;
  }
}
