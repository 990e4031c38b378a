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

export class MetricProviderError extends Error {
  readonly provider: string;
  constructor(provider: string, message: string, options?: { cause?: unknown }) {
    // One printable line: the message comes partly from the backend, and ends up in logs, the
    // decision log and stored reasons (PostgreSQL refuses a NUL in text, for ever).
    super(`${provider}: ${message}`.replace(/\s*[\u0000-\u001f\u007f][\s\u0000-\u001f\u007f]*/g, ' '), options);
    this.name = 'MetricProviderError';
    this.provider = provider;
  }
}
