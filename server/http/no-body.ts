import type { RequestHandler } from 'express';
import { z } from 'zod';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import type { RouteSpec } from './route-spec.ts';
import { sendError } from './send-error.ts';

/**
 * The most a request to a route without a body may send: an empty JSON object, `{}` with a little
 * white space, which the dashboard and the demo send with every rollout command.
 */
const EMPTY_BODY_BYTES = 64;

/**
 * For a route that declares no body (no bodyKind): a request that sends one is refused (400,
 * naming where the route takes its input instead) rather than answered with its body ignored —
 * `POST /rollouts/ID/abort` with `{"reason": …}` aborted without the reason. No body at all,
 * `Content-Length: 0`, an empty chunked body, or an empty JSON object (`{}`) are no body.
 */
export function refuseBody(route: RouteSpec, log: Logger): RequestHandler {
  const message = noBodyMessage(route);
  return (req, res, next) => {
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const length = req.headers['content-length'];
    if (!chunked && (length === undefined || Number(length) === 0)) {
      next();
      return;
    }
    const refuse = () => sendError(res, new ServiceError('bad_request', message), log);
    if (!chunked && Number(length) > EMPTY_BODY_BYTES) {
      refuse();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (empty: boolean | Error) => {
      if (settled) return;
      settled = true;
      req.off('data', onData).off('end', onEnd).off('error', onError);
      if (empty instanceof Error) next(empty);
      else if (empty) next();
      else refuse();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > EMPTY_BODY_BYTES) {
        req.pause();
        settle(false);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => settle(/^\s*(\{\s*\})?\s*$/.test(Buffer.concat(chunks).toString('utf8')));
    const onError = (error: Error) => settle(error);
    req.on('data', onData).on('end', onEnd).on('error', onError);
  };
}

/** `body: this route (POST /api/rollouts/:id/abort) takes no body; send the reason as ?reason=`. */
function noBodyMessage(route: RouteSpec): string {
  const keys = route.query instanceof z.ZodObject ? Object.keys(route.query.shape) : [];
  const where = `body: this route (${route.method.toUpperCase()} /api${route.path}) takes no body`;
  if (keys.length === 0) return where;
  if (keys.length === 1) return `${where}; send the ${keys[0]} as ?${keys[0]}=`;
  return `${where}; send its parameters in the query (${keys.map((key) => `?${key}=`).join(', ')})`;
}
