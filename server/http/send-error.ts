import type { Response } from 'express';
import type { Logger } from '../../shared/util/log.ts';
import { HTTP_STATUS, asServiceError } from '../app/service-error.ts';

/** Answers `{error: {code, message}}`; unexpected errors are logged and answered 500 without details. */
export function sendError(res: Response, error: unknown, log: Logger): void {
  const known = asServiceError(error);
  if (res.headersSent) {
    if (!known) log.error({ err: error }, 'request failed after the response started');
    res.destroy();
    return;
  }
  if (known) {
    res.status(HTTP_STATUS[known.code]).json({ error: { code: known.code, message: known.message } });
    return;
  }
  log.error({ err: error }, 'request failed');
  res.status(500).json({ error: { code: 'internal', message: 'internal server error (see the server log)' } });
}
