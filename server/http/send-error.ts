import type { Response } from 'express';
import type { Logger } from '../../shared/util/log.ts';
import { HTTP_STATUS, asServiceError, clientMessage } from '../app/service-error.ts';
import { errorMessage } from '../../shared/util/errors.ts';

/** The Retry-After of a 'retry_later' refusal: a leader's poll (2 s) and a takeover's first steps. */
const RETRY_LATER_SECONDS = 2;

/**
 * A response whose connection closed before its end: mostly a download the client aborted (agents
 * do for a newer assignment, a timeout, a stop), else one the server cut off (its token revoked).
 * Not a failure of the server: sendError logs it at info, without a stack.
 */
export class ResponseClosedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ResponseClosedError';
  }
}

/** Marks a request the server's shutdown cut off (listeners.ts), so its log does not blame the client. */
export const CUT_OFF_BY_SHUTDOWN = Symbol('cut off by the server shutting down');

/**
 * Answers `{error: {code, message}}`; unexpected errors are logged and answered 500 without details.
 * A refusal sent before the request's body was all read closes the connection: the rest of the
 * body is not read (and, for a body declared larger than it will ever send, not waited for).
 * A client that went away in the middle of its request body (an upload it aborted) is nobody's
 * failure here: logged at info, without a stack, and its connection closed. So is a response whose
 * connection closed before its end (a ResponseClosedError: a download the client aborted).
 */
export function sendError(res: Response, error: unknown, log: Logger): void {
  const known = asServiceError(error);
  const req = res.req as (typeof res.req & { complete?: boolean }) | undefined;
  if (error instanceof ResponseClosedError) {
    log.info({ method: req?.method, path: req?.path, reason: error.message }, 'the connection closed before the response was complete');
    res.destroy();
    return;
  }
  if (!known && req && req.destroyed && !req.complete) {
    const byShutdown = (req as { [CUT_OFF_BY_SHUTDOWN]?: true })[CUT_OFF_BY_SHUTDOWN] === true;
    log.info({ method: req.method, path: req.path, reason: errorMessage(error) }, byShutdown ? 'the server shut down before the request body was complete' : 'the client went away before its request body was complete');
    res.destroy();
    return;
  }
  if (res.headersSent) {
    if (!known) log.error({ err: error }, 'request failed after the response started');
    res.destroy();
    return;
  }
  if (known) {
    // The operator's problem more than the caller's: said in the server log too.
    if (known.code === 'insufficient_storage') log.error({ method: req?.method, path: req?.path, err: errorMessage(error) }, 'request refused: the server\'s storage cannot take the write (full, read-only or not permitted)');
    if (known.code === 'store_unavailable') log.warn({ method: req?.method, path: req?.path, err: errorMessage(error) }, 'request refused: the database does not answer');
    if (req && !req.complete && hasBody(req)) res.setHeader('Connection', 'close');
    // A 401 says how to authenticate (RFC 9110 §15.5.2: it must carry WWW-Authenticate).
    if (known.code === 'unauthenticated') res.setHeader('WWW-Authenticate', 'Bearer');
    // A refusal the same request may get past shortly says when to try (RFC 9110 §10.2.3).
    if (known.code === 'retry_later') res.setHeader('Retry-After', String(RETRY_LATER_SECONDS));
    res.status(HTTP_STATUS[known.code]).json({ error: { code: known.code, message: clientMessage(known.message) } });
    return;
  }
  log.error({ err: error }, 'request failed');
  res.status(500).json({ error: { code: 'internal', message: 'internal server error (see the server log)' } });
}

function hasBody(req: { headers: Record<string, string | string[] | undefined> }): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}
