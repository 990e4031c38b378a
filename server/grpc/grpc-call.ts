import {
  Metadata,
  status as GrpcStatus,
  type sendUnaryData,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import type { Logger } from '../../shared/util/log.ts';
import { describeDataProblem, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';
import { GRPC_STATUS, ServiceError, asServiceError } from '../app/service-error.ts';
import type { Principal } from '../auth/principal.ts';
import type { Permission } from '../auth/roles.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';

export interface GrpcDeps {
  tokens: TokenService;
  metrics: ServerMetrics;
  log: Logger;
}

interface GrpcFailure {
  code: GrpcStatus;
  details: string;
}

/** Maps any error to a gRPC status; unexpected ones are logged and reported as INTERNAL without details. */
function toStatus(error: unknown, log: Logger, method: string): GrpcFailure {
  const known = asServiceError(error);
  if (known) return { code: GRPC_STATUS[known.code], details: known.message };
  log.error({ err: error, method }, 'gRPC call failed');
  return { code: GrpcStatus.INTERNAL, details: 'internal server error (see the server log)' };
}

/**
 * A request message's first NUL character or `__proto__` map key, as INVALID_ARGUMENT: the schemas
 * downstream would drop a `__proto__` key without a word, and PostgreSQL refuses NUL in text.
 */
function checkRequest(request: unknown): void {
  const problem = untrustedDataProblem(request);
  if (problem) throw new ServiceError('bad_request', describeDataProblem(problem, 'request'));
}

function authorization(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return value === undefined ? undefined : String(value);
}

/** Builds handlers that authenticate, map errors to statuses and record call durations. */
export class GrpcHandlers {
  constructor(private readonly deps: GrpcDeps, private readonly service: string) {}

  unary<Req, Res>(method: string, permission: Permission, handle: (request: Req, principal: Principal) => Promise<Res>) {
    const name = `${this.service}/${method}`;
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      this.deps.tokens
        .authorize(authorization(call.metadata), permission)
        .then((principal) => {
          checkRequest(call.request);
          return handle(call.request, principal);
        })
        .then(
          (response) => {
            stop({ code: GrpcStatus[GrpcStatus.OK] });
            callback(null, response);
          },
          (error) => {
            const failure = toStatus(error, this.deps.log, name);
            stop({ code: GrpcStatus[failure.code] });
            callback(failure);
          },
        );
    };
  }

  /** A server stream: `handle` writes with `call.write` and resolves when done. */
  serverStream<Req, Res>(method: string, permission: Permission, handle: (call: ServerWritableStream<Req, Res>, principal: Principal) => Promise<void>) {
    const name = `${this.service}/${method}`;
    return (call: ServerWritableStream<Req, Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      let unwatch = () => {};
      this.deps.tokens
        .authorize(authorization(call.metadata), permission)
        .then((principal) => {
          checkRequest(call.request);
          // A stream still open when its token is revoked ends with UNAUTHENTICATED; its handler cleans up as on a cancel.
          unwatch = this.deps.tokens.revocations.watch(principal.tokenId, () => {
            if (call.cancelled) return;
            call.emit('error', { code: GrpcStatus.UNAUTHENTICATED, details: 'the token was revoked' });
            call.emit('cancelled');
          });
          return handle(call, principal);
        })
        .finally(() => unwatch())
        .then(
          () => {
            stop({ code: GrpcStatus[GrpcStatus.OK] });
            call.end();
          },
          (error) => {
            const failure = toStatus(error, this.deps.log, name);
            stop({ code: GrpcStatus[failure.code] });
            if (!call.cancelled) call.emit('error', failure);
          },
        );
    };
  }

  /** A client stream: `handle` reads `call` (an async iterable of messages). */
  clientStream<Req, Res>(method: string, permission: Permission, handle: (call: ServerReadableStream<Req, Res>, principal: Principal) => Promise<Res>) {
    const name = `${this.service}/${method}`;
    return (call: ServerReadableStream<Req, Res>, callback: sendUnaryData<Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      this.deps.tokens
        .authorize(authorization(call.metadata), permission)
        .then((principal) => handle(call, principal))
        .then(
          (response) => {
            stop({ code: GrpcStatus[GrpcStatus.OK] });
            callback(null, response);
          },
          (error) => {
            const failure = toStatus(error, this.deps.log, name);
            stop({ code: GrpcStatus[failure.code] });
            call.destroy();
            callback(failure);
          },
        );
    };
  }
}
