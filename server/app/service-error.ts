import { status as GrpcStatus } from '@grpc/grpc-js';
import { UserError } from '../../shared/util/errors.ts';
import { StoreUnavailableError } from '../store/store-unavailable.ts';
import { STORAGE_FULL_CODES, STORAGE_UNWRITABLE_CODES } from './storage-codes.ts';

export type ErrorCode =
  | 'bad_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  /** A path the API serves, with a method it does not (the answer's Allow header names those it does). */
  | 'method_not_allowed'
  /** The request cannot be done in the state the thing it names is in (REST 409, gRPC FAILED_PRECONDITION). */
  | 'conflict'
  /** What the request would create exists already: an enrolled device id, a registered version or artifact (REST 409, gRPC ALREADY_EXISTS). */
  | 'already_exists'
  | 'payload_too_large'
  /** A body in an encoding or charset the server cannot read. */
  | 'unsupported_media_type'
  /** A conditional request (If-Match) whose condition does not hold. */
  | 'precondition_failed'
  | 'range_not_satisfiable'
  /** This server cannot do it now but another can (a rollout command sent to a follower). */
  | 'unavailable'
  /**
   * This server cannot do it now, and the same request may work shortly (it is shutting down, or
   * taking the rollouts or the broker over): nothing was done. The CLI exits 5 on it, as for a
   * server it could not reach.
   */
  | 'retry_later'
  /** Too much work queued already (pruning jobs); try again later. */
  | 'too_many_requests'
  /** The server's storage cannot take the write (a full disk or quota, or the database's disk full). */
  | 'insufficient_storage'
  /** The server's database does not answer (unreachable, restarting, the connection lost): try again shortly. */
  | 'store_unavailable'
  /** A stored file turned out damaged while it was sent (its bytes hash to something else). */
  | 'data_loss'
  /** The client stopped sending in the middle of its request for longer than --idle-timeout (an upload it stalled): nothing was stored. */
  | 'request_timeout';

export const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  already_exists: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  unavailable: 503,
  retry_later: 503,
  too_many_requests: 429,
  insufficient_storage: 507,
  store_unavailable: 503,
  data_loss: 500,
  request_timeout: 408,
};

export const GRPC_STATUS: Record<ErrorCode, GrpcStatus> = {
  bad_request: GrpcStatus.INVALID_ARGUMENT,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  forbidden: GrpcStatus.PERMISSION_DENIED,
  not_found: GrpcStatus.NOT_FOUND,
  method_not_allowed: GrpcStatus.UNIMPLEMENTED,
  conflict: GrpcStatus.FAILED_PRECONDITION,
  already_exists: GrpcStatus.ALREADY_EXISTS,
  precondition_failed: GrpcStatus.FAILED_PRECONDITION,
  payload_too_large: GrpcStatus.RESOURCE_EXHAUSTED,
  unsupported_media_type: GrpcStatus.INVALID_ARGUMENT,
  range_not_satisfiable: GrpcStatus.OUT_OF_RANGE,
  unavailable: GrpcStatus.FAILED_PRECONDITION,
  // With RETRY_LATER_TRAILER (grpc-status.ts): grpc-js says UNAVAILABLE of a connection it lost too.
  retry_later: GrpcStatus.UNAVAILABLE,
  too_many_requests: GrpcStatus.RESOURCE_EXHAUSTED,
  insufficient_storage: GrpcStatus.RESOURCE_EXHAUSTED,
  store_unavailable: GrpcStatus.UNAVAILABLE,
  data_loss: GrpcStatus.DATA_LOSS,
  // Not DEADLINE_EXCEEDED: that is the client's own deadline, after which a change may have been made; here nothing was.
  request_timeout: GrpcStatus.ABORTED,
};

/**
 * The trailer of a status the server sent as 'retry_later' (UNAVAILABLE): what tells it from the
 * UNAVAILABLE grpc-js gives a call whose connection failed (details of its own).
 */
export const RETRY_LATER_TRAILER = 'fleetprune-retry-later';

/**
 * A refused request, raised by services and mapped by each transport: REST answers
 * `{error: {code, message}}` with HTTP_STATUS[code], gRPC with GRPC_STATUS[code].
 */
export class ServiceError extends UserError {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'ServiceError';
    this.code = code;
  }
}

/**
 * Any error as a ServiceError: UserErrors are bad requests; a write the server's storage could not
 * take is 'insufficient_storage' (the request is refused as a whole: the store's transaction rolled
 * back, a blob not renamed into place); a database that did not answer is 'store_unavailable';
 * anything else is not the caller's fault (null).
 */
export function asServiceError(error: unknown): ServiceError | null {
  if (error instanceof ServiceError) return error;
  const unavailable = causeOf(error, StoreUnavailableError);
  if (unavailable) {
    return new ServiceError('store_unavailable', `${STORE_UNAVAILABLE_PREFIX} (${unavailable.code ?? unavailable.message}), so the request was not completed; try again shortly`, { cause: error });
  }
  const full = storageFullCode(error);
  if (full) return new ServiceError('insufficient_storage', `the server's storage is full (${full}), so the request was not completed. Free space under its --data-dir (or on its database's disk) and try again`, { cause: error });
  const unwritable = codeIn(error, STORAGE_UNWRITABLE_CODES);
  if (unwritable) {
    return new ServiceError('insufficient_storage', `the server cannot write to its storage (${unwritable}), so the request was not completed. Make its --data-dir writable (the server log names the file) and try again`, { cause: error });
  }
  if (error instanceof UserError) return new ServiceError('bad_request', error.message, { cause: error });
  return null;
}

/** How a 'store_unavailable' refusal's message starts (the CLI tells it from a server it cannot reach by it). */
export const STORE_UNAVAILABLE_PREFIX = "the server's database does not answer";

/** `error` and its causes, at most five deep. */
function* causeChain(error: unknown): Generator<Error> {
  for (let at = error, depth = 0; at instanceof Error && depth < 5; at = at.cause, depth++) yield at;
}

/** `error` or the first of its causes that is a `type`. */
function causeOf<T>(error: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (const at of causeChain(error)) if (at instanceof type) return at;
  return undefined;
}

/** The code of a full disk in `error` or its causes, else undefined. */
export function storageFullCode(error: unknown): string | undefined {
  return codeIn(error, STORAGE_FULL_CODES);
}

/** The first code of `codes` in `error` or its causes, else undefined. */
function codeIn(error: unknown, codes: ReadonlySet<string>): string | undefined {
  for (const at of causeChain(error)) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && codes.has(code)) return code;
  }
  return undefined;
}

/** The longest error message a client is sent; a refusal that quotes what was sent is cut there. */
export const MAX_CLIENT_MESSAGE = 2_000;

/**
 * `message` as a client is sent it: at most MAX_CLIENT_MESSAGE characters, and well-formed
 * Unicode. A quoted input can end in half of a surrogate pair (JSON.parse's message quotes the one
 * code unit it stopped at), which gRPC cannot put in its status header: the call then fails in
 * grpc-js itself. A long quoted input can pass the status header's size limit, and the call never ends.
 */
export function clientMessage(message: string): string {
  const cut = message.length > MAX_CLIENT_MESSAGE ? `${message.slice(0, MAX_CLIENT_MESSAGE)}…` : message;
  return cut.toWellFormed();
}
