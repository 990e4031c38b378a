import type { Request, Response } from 'express';
import { guardBodySize } from '../../shared/http/body-size-guard.ts';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import { sendError } from './send-error.ts';

/** The 413 of a body over `limit` bytes. */
export function bodyTooLarge(limit: number): ServiceError {
  return new ServiceError('payload_too_large', `body: larger than the ${limit}-byte limit (--max-body-bytes)`);
}

/**
 * Refuses a request body over `limit` bytes as soon as that is known (guardBodySize): the 413 goes
 * out then, and the connection is closed rather than drained (sendError). False when it was
 * refused before anything was read.
 */
export function limitBodySize(req: Request, res: Response, limit: number, log: Logger): boolean {
  return guardBodySize(req, limit, () => sendError(res, bodyTooLarge(limit), log));
}
