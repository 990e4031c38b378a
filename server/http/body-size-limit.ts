import type { Request, Response } from 'express';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import { sendError } from './send-error.ts';

/** The 413 of a body over `limit` bytes. */
export function bodyTooLarge(limit: number): ServiceError {
  return new ServiceError('payload_too_large', `body: larger than the ${limit}-byte limit (--max-body-bytes)`);
}

/**
 * Refuses a request body over `limit` bytes as soon as that is known: at once when its declared
 * Content-Length says so (false: answered, nothing read), else when the bytes received pass it
 * (the 413 goes out then, and the connection is closed rather than drained). Compressed bodies
 * count by the bytes sent; the reader still applies `limit` to what they inflate to.
 */
export function limitBodySize(req: Request, res: Response, limit: number, log: Logger): boolean {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    sendError(res, bodyTooLarge(limit), log);
    return false;
  }
  let received = 0;
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= limit) return;
    req.off('data', count);
    sendError(res, bodyTooLarge(limit), log);
  };
  req.on('data', count);
  req.once('end', () => req.off('data', count));
  return true;
}
