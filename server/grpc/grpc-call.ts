import {
  status as GrpcStatus,
  type Metadata,
  type sendUnaryData,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import type { Logger } from '../../shared/util/log.ts';
import { describeDataProblem, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';
import { ServiceError } from '../app/service-error.ts';
import type { Principal } from '../auth/principal.ts';
import type { Permission } from '../auth/roles.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';
import type { StalledStreams } from '../app/stalled-streams.ts';
import { declareAccess } from './grpc-access.ts';
import { callerOf, cutOf } from './grpc-auth-interceptor.ts';
import { toStatus } from './grpc-status.ts';
import { PacedCallWriter } from './paced-call-writer.ts';
import { refuseMalformed } from './malformed-messages.ts';

/** What the gRPC handlers and the auth interceptor need (the tokens, for the interceptor). */
export interface GrpcDeps {
  tokens: TokenService;
  metrics: ServerMetrics;
  log: Logger;
}

/**
 * A request message's first NUL character or `__proto__` map key, as INVALID_ARGUMENT: the schemas
 * downstream would drop a `__proto__` key without a word, and PostgreSQL refuses NUL in text.
 */
function checkRequest(request: unknown): void {
  refuseMalformed(request);
  const problem = untrustedDataProblem(request);
  if (problem) throw new ServiceError('bad_request', describeDataProblem(problem, problem.path === '' || problem.path.startsWith('[') ? 'request' : ''));
}

/** The caller the auth interceptor let in; a call without one reached its handler past the interceptor (INTERNAL, logged). */
function caller(metadata: Metadata, name: string): Principal {
  const principal = callerOf(metadata);
  if (!principal) throw new Error(`gRPC ${name} reached its handler without passing the auth interceptor`);
  return principal;
}

/**
 * Builds handlers that map errors to statuses and record call durations. Each declares the
 * permission its method needs; the auth interceptor (grpc-auth-interceptor.ts) checks it, and the
 * token, before the call's message is read, and hands the handler the caller.
 */
/** A unary call whose client is gone: its status (DEADLINE_EXCEEDED or CANCELLED), not a failure to log. */
class ClientGone extends Error {
  constructor(readonly code: GrpcStatus, readonly details: string) {
    super(details);
  }
}

/** Why the call's client no longer waits for its answer (its deadline passed, or it cancelled), or undefined. */
function clientGone(call: ServerUnaryCall<unknown, unknown>): ClientGone | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (Number.isFinite(at) && Date.now() >= at) return new ClientGone(GrpcStatus.DEADLINE_EXCEEDED, 'the call\'s deadline passed before it was done');
  if (call.cancelled) return new ClientGone(GrpcStatus.CANCELLED, 'cancelled by the client');
  return undefined;
}

/** A stream the client cancelled fails because of it (a premature close): its status, not a server failure to log. */
const CANCELLED = { code: GrpcStatus.CANCELLED, details: 'cancelled by the client' };

export class GrpcHandlers {
  constructor(private readonly deps: GrpcDeps, private readonly service: string) {}

  /** A call whose answer itself failed (grpc-js threw while sending it): logged, never a crash of the server. */
  #unanswered(error: unknown, name: string): void {
    this.deps.log.error({ err: error, method: name }, 'gRPC call could not be answered');
  }

  unary<Req, Res>(method: string, permission: Permission, handle: (request: Req, principal: Principal) => Promise<Res>) {
    const name = `${this.service}/${method}`;
    const handler = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      Promise.resolve()
        .then(() => {
          const principal = caller(call.metadata, name);
          checkRequest(call.request);
          // A client that gave up (its deadline passed while the token was checked, or it
          // cancelled) would never learn the answer: a device enrolled, a token created that
          // nobody can read. Nothing is done for it.
          const gone = clientGone(call);
          if (gone) throw gone;
          return handle(call.request, principal);
        })
        .then(
          (response) => {
            stop({ code: GrpcStatus[GrpcStatus.OK] });
            const gone = clientGone(call);
            // Its deadline passed while the work ran: done all the same, and the log says so.
            if (gone) this.deps.log.warn({ method: name, peer: call.getPeer() }, `gRPC ${name} finished after its client gave up (${gone.details}): what it did stands, and the client was not told`);
            callback(null, response);
          },
          (error) => {
            const failure = error instanceof ClientGone ? error : toStatus(error, this.deps.log, name);
            stop({ code: GrpcStatus[failure.code] });
            callback(failure);
          },
        )
        .catch((error) => this.#unanswered(error, name));
    };
    return declareAccess(handler, { name, permission });
  }

  /**
   * A server stream: `handle` writes with `call.write` and resolves when done. A stream whose token
   * is revoked is cancelled by the interceptor; its handler cleans up as on a client's cancel.
   */
  serverStream<Req, Res>(method: string, permission: Permission, handle: (call: ServerWritableStream<Req, Res>, principal: Principal) => Promise<void>) {
    const name = `${this.service}/${method}`;
    const handler = (call: ServerWritableStream<Req, Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      Promise.resolve()
        .then(() => {
          const principal = caller(call.metadata, name);
          checkRequest(call.request);
          return handle(call, principal);
        })
        .then(
          () => {
            stop({ code: GrpcStatus[cutOf(call.metadata)?.code ?? GrpcStatus.OK] });
            call.end();
          },
          (error) => {
            const failure = cutOf(call.metadata) ?? (call.cancelled ? CANCELLED : toStatus(error, this.deps.log, name));
            stop({ code: GrpcStatus[failure.code] });
            if (!call.cancelled) call.emit('error', failure);
          },
        )
        .catch((error) => this.#unanswered(error, name));
    };
    return declareAccess(handler, { name, permission });
  }

  /**
   * A server stream of events that may last for days (a watch): `handle` sends with `events.send`
   * and stops sending, and resolves, once `events.signal` aborts (the client cancelled, or stopped
   * reading). Sends respect back-pressure (PacedCallWriter); a client whose unsent messages stay
   * over the `stalled` policy's budget for its grace period is ended with RESOURCE_EXHAUSTED, its
   * backlog dropped, one warn line logged and counted (server/app/stalled-streams.ts).
   */
  eventStream<Req, Res extends object>(
    method: string,
    permission: Permission,
    stalled: StalledStreams,
    handle: (call: ServerWritableStream<Req, Res>, events: { send(message: Res): void; signal: AbortSignal }, principal: Principal) => Promise<void>,
  ) {
    const name = `${this.service}/${method}`;
    return this.serverStream<Req, Res>(method, permission, async (call, principal) => {
      const done = new AbortController();
      let endStalled: (error: ServiceError) => void = () => {};
      const stalledOut = new Promise<never>((_, reject) => (endStalled = reject));
      const writer = new PacedCallWriter<Res>(call, stalled, (unsentBytes) => {
        stalled.ended({ api: 'grpc', stream: name, peer: call.getPeer(), unsentBytes });
        done.abort();
        const { budgetBytes, graceMs } = stalled.limits;
        endStalled(new ServiceError('too_many_requests', `the client read too slowly: over ${budgetBytes} bytes waited to be sent for ${graceMs / 1000} s; watch again to resume`));
      });
      const cancelled = () => (writer.stop(), done.abort());
      if (call.cancelled) cancelled();
      else call.once('cancelled', cancelled);
      try {
        const finished = handle(call, { send: (message) => writer.write(message), signal: done.signal }, principal).then(() => writer.handedOver());
        await Promise.race([finished, stalledOut]);
      } finally {
        writer.stop();
        call.off('cancelled', cancelled);
      }
    });
  }

  /** A client stream: `handle` reads `call` (an async iterable of messages). */
  clientStream<Req, Res>(method: string, permission: Permission, handle: (call: ServerReadableStream<Req, Res>, principal: Principal) => Promise<Res>) {
    const name = `${this.service}/${method}`;
    const handler = (call: ServerReadableStream<Req, Res>, callback: sendUnaryData<Res>) => {
      const stop = this.deps.metrics.grpcDuration.startTimer({ method: name });
      Promise.resolve()
        .then(() => handle(call, caller(call.metadata, name)))
        .then(
          (response) => {
            stop({ code: GrpcStatus[cutOf(call.metadata)?.code ?? GrpcStatus.OK] });
            callback(null, response);
          },
          (error) => {
            // A revoked token's upload fails as its stream is cut: the cut is its status, not an internal error.
            const failure = cutOf(call.metadata) ?? (call.cancelled ? CANCELLED : toStatus(error, this.deps.log, name));
            stop({ code: GrpcStatus[failure.code] });
            call.destroy();
            callback(failure);
          },
        )
        .catch((error) => this.#unanswered(error, name));
    };
    return declareAccess(handler, { name, permission });
  }
}
