/**
 * The database did not answer: unreachable, restarting or shutting down, or the connection was
 * lost mid-statement. Nothing the request did wrong, and it may work when tried again; the
 * PostgreSQL engine raises it for such failures (the original is its cause, its code kept), so
 * that the APIs can answer 503 / UNAVAILABLE rather than an internal error.
 */
export class StoreUnavailableError extends Error {
  readonly code: string | undefined;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'StoreUnavailableError';
    const code = (cause as { code?: unknown } | null)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** node's codes for a connection refused, reset or timed out, and for a host that cannot be reached or resolved. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);
/** SQLSTATEs of a server going away: admin_shutdown, crash_shutdown, cannot_connect_now (starting up or in recovery). */
const SHUTDOWN_STATES = new Set(['57P01', '57P02', '57P03']);
/** pg's own errors for a connection it lost or could not open in time, which carry no code. */
const PG_CONNECTION_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)/;

/** Whether a PostgreSQL client error says the database did not answer (see StoreUnavailableError), rather than refused a statement. */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return SOCKET_CODES.has(code) || SHUTDOWN_STATES.has(code) || code.startsWith('08');
  return PG_CONNECTION_MESSAGES.test(error.message);
}

/** `error`, or a StoreUnavailableError around it when it is a connection failure. */
export function asStoreUnavailable(error: unknown): unknown {
  return error instanceof StoreUnavailableError || !isConnectionFailure(error) ? error : new StoreUnavailableError(error);
}
