import type { ServiceDefinition } from '@grpc/grpc-js';
import { fleetpruneMessageType } from '../../shared/proto/load-proto.ts';
import { ServiceError } from '../app/service-error.ts';
import { stringFieldProblem, type MessageDescriptor } from './utf8-fields.ts';

const MALFORMED = Symbol('malformed gRPC message');

interface Malformed {
  /** The refusal's details: `request: not a valid …` or `label: not valid UTF-8 …`. */
  [MALFORMED]: string;
}

/**
 * `service` with request decoders that do not throw: grpc-js answers a message that does not
 * decode with INTERNAL ("Error deserializing request"), which blames the server for the caller's
 * bytes. Such a message reaches the handler as a marker instead, and `refuseMalformed` turns it
 * into INVALID_ARGUMENT naming the message type. So does a message whose string field is not
 * UTF-8, which the decoder would read as U+FFFD without a word (see stringFieldProblem): a lone
 * surrogate a client encodes that way is refused as REST refuses "\ud800".
 */
export function tolerantService(service: ServiceDefinition): ServiceDefinition {
  const methods = Object.entries(service).map(([name, method]) => {
    const decode = method.requestDeserialize;
    const descriptor = (method as { requestType?: { type?: MessageDescriptor } }).requestType?.type;
    const type = descriptor?.name ?? 'request';
    const requestDeserialize = (bytes: Buffer): unknown => {
      const fieldProblem = (): string | null => (descriptor ? stringFieldProblem(bytes, descriptor, (name) => fleetpruneMessageType(name) as MessageDescriptor | undefined) : null);
      try {
        const message = decode(bytes);
        const problem = fieldProblem();
        return problem ? ({ [MALFORMED]: problem } satisfies Malformed) : message;
      } catch (error) {
        // A number or bool field sent length-delimited (or as fixed32 where a varint belongs) fails
        // the decoder with a reason about byte offsets: the field and its wire type say more.
        let problem: string | null = null;
        try {
          problem = fieldProblem();
        } catch {
          // bytes the walk cannot read either: the decoder's reason stands
        }
        const reason = error instanceof Error ? error.message : String(error);
        return { [MALFORMED]: problem ?? `request: not a valid fleetprune.v1.${type} message (${reason})` } satisfies Malformed;
      }
    };
    return [name, { ...method, requestDeserialize }];
  });
  return Object.fromEntries(methods) as ServiceDefinition;
}

/** Throws INVALID_ARGUMENT for a message that did not decode (see tolerantService). */
export function refuseMalformed(message: unknown): void {
  if (typeof message === 'object' && message !== null && MALFORMED in message) {
    throw new ServiceError('bad_request', (message as Malformed)[MALFORMED]);
  }
}
