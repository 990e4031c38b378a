import { ServerInterceptingCall, status as GrpcStatus, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import type { Principal } from '../auth/principal.ts';
import type { GrpcDeps } from './grpc-call.ts';
import type { MethodAccess } from './grpc-access.ts';
import { toStatus } from './grpc-status.ts';

const callers = new WeakMap<Metadata, Principal>();
const cuts = new WeakMap<Metadata, { code: GrpcStatus; details: string }>();

/** The status the interceptor ended an admitted call with (its token was revoked), if it did: its handler records that, not its own ending. */
export function cutOf(metadata: Metadata): { code: GrpcStatus; details: string } | undefined {
  return cuts.get(metadata);
}

/** Who the interceptor let in, for the handler of the call whose metadata this is. */
export function callerOf(metadata: Metadata): Principal | undefined {
  return callers.get(metadata);
}

function authorization(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return value === undefined ? undefined : String(value);
}

/**
 * A token the caller did send can arrive missing: grpc-js drops an `authorization` value holding a
 * tab or a character outside printable ASCII (a non-breaking space pasted after the token), and
 * node's HTTP/2 one that starts or ends with a space, before any of this project's code sees it,
 * where REST reads the same header. The refusal says so.
 */
export const MISSING_GRPC_TOKEN =
  'missing bearer token (send "authorization: Bearer <token>" metadata; a value that starts or ends with a space, or holds a tab or a character outside printable ASCII, such as a pasted non-breaking space, does not reach the server)';

function withDroppedHeaderHint(failure: { code: GrpcStatus; details: string }, metadata: Metadata): { code: GrpcStatus; details: string } {
  return failure.code === GrpcStatus.UNAUTHENTICATED && authorization(metadata) === undefined ? { ...failure, details: MISSING_GRPC_TOKEN } : failure;
}

/**
 * grpc-js answers a unary or server-streaming call that ends without its one request message, or
 * sends a second, with UNIMPLEMENTED ("… for server streaming method …", for a unary one too): as
 * if the method did not exist, for what is the caller's mistake. It is INVALID_ARGUMENT.
 */
function messageCountFault<S extends { code: GrpcStatus; details?: string }>(status: S): S {
  if (status.code !== GrpcStatus.UNIMPLEMENTED) return status;
  if (status.details?.startsWith('Received no request message')) {
    return { ...status, code: GrpcStatus.INVALID_ARGUMENT, details: 'request: the call ended without its request message (this method takes exactly one)' };
  }
  if (status.details?.startsWith('Received a second request message')) {
    return { ...status, code: GrpcStatus.INVALID_ARGUMENT, details: 'request: the call sent a second request message (this method takes exactly one)' };
  }
  return status;
}

/**
 * Checks every gRPC call's token and role from its metadata, before its message is read: grpc-js
 * reads and decodes a request only when the handler asks for it, and the handler only starts once
 * this passes the metadata on. A refused call ends at once (UNAUTHENTICATED or PERMISSION_DENIED,
 * as REST answers before reading a body): its message is neither decoded nor read past the
 * HTTP/2 flow-control window.
 *
 * A call whose token is revoked while it still sends its request (an upload), or while it streams
 * its answer (a watch, a download), ends with UNAUTHENTICATED: at once on this server, within
 * REVOCATION_POLL_MS on another sharing the database. A unary answer already being worked out is
 * let finish (a token revoking itself gets its answer).
 */
export function grpcAuthInterceptor(deps: GrpcDeps, access: ReadonlyMap<string, MethodAccess>): ServerInterceptor {
  return (method, call) => {
    const needs = access.get(method.path);
    let ended = false;
    let cut = false;
    let unwatch = () => {};
    let admitted: Metadata | undefined;
    const refuse = (status: { code: GrpcStatus; details: string }) => {
      cut = true;
      if (admitted) cuts.set(admitted, status);
      call.sendStatus(status);
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, pass) => {
            if (!needs) return refuse({ code: GrpcStatus.UNIMPLEMENTED, details: `no permission is declared for ${method.path}` });
            const stop = deps.metrics.grpcDuration.startTimer({ method: needs.name });
            deps.tokens.authorize(authorization(metadata), needs.permission).then(
              (principal) => {
                if (ended) return;
                callers.set(metadata, principal);
                admitted = metadata;
                unwatch = deps.tokens.revocations.watch(principal.tokenId, (why) => refuse({ code: GrpcStatus.UNAUTHENTICATED, details: why }));
                pass(metadata);
              },
              (error: unknown) => {
                const failure = withDroppedHeaderHint(toStatus(error, deps.log, needs.name), metadata);
                stop({ code: GrpcStatus[failure.code] });
                refuse(failure);
              },
            );
          },
          onReceiveHalfClose: (pass) => {
            if (!method.responseStream) unwatch();
            pass();
          },
          onCancel: () => {
            ended = true;
            unwatch();
          },
        }),
      // Once cut, the handler (which learns of it when the call ends) sends nothing more: a
      // message written after the status would fail the call before its trailers go out.
      sendMessage: (message, pass) => {
        if (!cut) pass(message);
      },
      sendStatus: (status, pass) => {
        if (!cut) pass(messageCountFault(status));
      },
    });
  };
}
