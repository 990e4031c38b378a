import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { Logger } from '../../shared/util/log.ts';
import { GRPC_STATUS, RETRY_LATER_TRAILER, asServiceError, clientMessage } from '../app/service-error.ts';
import { printable } from '../rollout/operator-text.ts';
import { errorMessage } from '../../shared/util/errors.ts';

export interface GrpcFailure {
  code: GrpcStatus;
  details: string;
  metadata?: Metadata;
}

/** Maps any error to a gRPC status; unexpected ones are logged and reported as INTERNAL without details. */
export function toStatus(error: unknown, log: Logger, method: string): GrpcFailure {
  const known = asServiceError(error);
  // One line, escaped: messages quote what the request held (a spec's key, a label value, a version), newlines and escape sequences included.
  if (known) {
    // The operator's problem more than the caller's: said in the server log too.
    if (known.code === 'insufficient_storage') log.error({ method, err: errorMessage(error) }, 'gRPC call refused: the server\'s storage cannot take the write (full, read-only or not permitted)');
    if (known.code === 'store_unavailable') log.warn({ method, err: errorMessage(error) }, 'gRPC call refused: the database does not answer');
    const failure: GrpcFailure = { code: GRPC_STATUS[known.code], details: printable(clientMessage(known.message)) };
    if (known.code === 'retry_later') {
      failure.metadata = new Metadata();
      failure.metadata.set(RETRY_LATER_TRAILER, '1');
    }
    return failure;
  }
  log.error({ err: error, method }, 'gRPC call failed');
  return { code: GrpcStatus.INTERNAL, details: 'internal server error (see the server log)' };
}
