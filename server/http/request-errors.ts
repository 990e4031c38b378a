import type { Request } from 'express';
import { STATUS_CODES } from 'node:http';
import { undecodableBody } from '../../shared/http/undecodable-body.ts';
import { ServiceError, type ErrorCode } from '../app/service-error.ts';

const CODE_OF_STATUS: Readonly<Record<number, ErrorCode>> = {
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  412: 'precondition_failed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  416: 'range_not_satisfiable',
};

/**
 * A request error raised by express, its router or body-parser (http-errors style: an Error
 * with a 4xx `status`) as a ServiceError with a short message, or null for anything else:
 * a malformed percent-encoding in the path (URIError), a corrupt gzip/deflate body, malformed
 * JSON, a body over the limit. These are the caller's fault, so they never reach the log as
 * failures.
 */
export function requestError(error: unknown, req: Request): ServiceError | null {
  if (!(error instanceof Error) || error instanceof ServiceError) return null;
  const { status, statusCode, type } = error as Error & { status?: unknown; statusCode?: unknown; type?: unknown };
  const httpStatus = typeof status === 'number' ? status : statusCode;
  if (typeof httpStatus !== 'number' || httpStatus < 400 || httpStatus > 499) return null;
  const errorCode = CODE_OF_STATUS[httpStatus] ?? 'bad_request';
  const message = oneLine(error.message);
  if (type === 'entity.parse.failed') return new ServiceError('bad_request', `body: malformed JSON (${message})`);
  if (type === 'entity.too.large') {
    const limit = (error as { limit?: number }).limit;
    return new ServiceError('payload_too_large', `body: larger than the ${limit}-byte limit (--max-body-bytes)`);
  }
  if (type === 'request.aborted') return new ServiceError('bad_request', 'body: the client aborted the upload');
  if (error instanceof URIError) return new ServiceError('bad_request', `path: malformed percent-encoding (${message})`);
  const undecodable = undecodableBody(error as { code?: unknown }, req.headers['content-encoding']);
  if (undecodable) return new ServiceError('bad_request', `body: ${undecodable}`);
  const exposed = (error as { expose?: unknown }).expose !== false && message !== '';
  return new ServiceError(errorCode, `${type === undefined ? 'request' : 'body'}: ${exposed ? message : STATUS_CODES[httpStatus] ?? 'bad request'}`);
}

function oneLine(text: string): string {
  const line = text.split('\n')[0]!;
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
