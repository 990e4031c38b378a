import type { ServiceDefinition } from '@grpc/grpc-js';
import { ServiceError } from '../app/service-error.ts';

const MALFORMED = Symbol('malformed gRPC message');

interface Malformed {
  [MALFORMED]: string;
}

/**
 * `service` with request decoders that do not throw: grpc-js answers a message that does not
 * decode with INTERNAL ("Error deserializing request"), which blames the server for the caller's
 * bytes. Such a message reaches the handler as a marker instead, and `refuseMalformed` turns it
 * into INVALID_ARGUMENT naming the message type.
 */
export function tolerantService(service: ServiceDefinition): ServiceDefinition {
  const methods = Object.entries(service).map(([name, method]) => {
    const decode = method.requestDeserialize;
    const type = (method as { requestType?: { type?: { name?: string } } }).requestType?.type?.name ?? 'request';
    const requestDeserialize = (bytes: Buffer): unknown => {
      try {
        return decode(bytes);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return { [MALFORMED]: `not a valid fleetprune.v1.${type} message (${reason})` } satisfies Malformed;
      }
    };
    return [name, { ...method, requestDeserialize }];
  });
  return Object.fromEntries(methods) as ServiceDefinition;
}

/** Throws INVALID_ARGUMENT for a message that did not decode (see tolerantService). */
export function refuseMalformed(message: unknown): void {
  if (typeof message === 'object' && message !== null && MALFORMED in message) {
    throw new ServiceError('bad_request', `request: ${(message as Malformed)[MALFORMED]}`);
  }
}
