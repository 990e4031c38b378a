import type { ServiceDefinition } from '@grpc/grpc-js';
import { fleetpruneMessageType } from '../../shared/proto/load-proto.ts';
import { ServiceError } from '../app/service-error.ts';
import { stringFieldProblem, type MessageDescriptor } from './utf8-fields.ts';

const MALFORMED = Symbol('malformed gRPC message');

interface Malformed {
  /** The refusal's details: `request: not a valid …` or `label: not valid UTF-8 …`. */
  [MALFORMED]: string;
  /** A message larger than the method takes (RESOURCE_EXHAUSTED); otherwise one that does not decode (INVALID_ARGUMENT). */
  tooLarge?: true;
}

/**
 * The largest message a method takes, in bytes, by its path (`/fleetprune.v1.Devices/EnrollDevice`);
 * null for no limit of its own (the transport's receive cap still holds).
 */
export type MessageLimit = (path: string) => { bytes: number; option: string } | null;

/**
 * `service` with request decoders that do not throw: grpc-js answers a message that does not
 * decode with INTERNAL ("Error deserializing request"), which blames the server for the caller's
 * bytes. Such a message reaches the handler as a marker instead, and `refuseMalformed` turns it
 * into INVALID_ARGUMENT naming the message type. So does a message whose string field is not
 * UTF-8, which the decoder would read as U+FFFD without a word (see stringFieldProblem): a lone
 * surrogate a client encodes that way is refused as REST refuses "\ud800".
 */
export function tolerantService(service: ServiceDefinition, limitOf: MessageLimit = () => null): ServiceDefinition {
  const methods = Object.entries(service).map(([name, method]) => {
    const decode = method.requestDeserialize;
    const descriptor = (method as { requestType?: { type?: MessageDescriptor } }).requestType?.type;
    const type = descriptor?.name ?? 'request';
    const limit = limitOf(method.path);
    const requestDeserialize = (bytes: Buffer): unknown => {
      // As REST refuses a body over --max-body-bytes (413), before reading it.
      if (limit && bytes.length > limit.bytes) {
        return { [MALFORMED]: `request: ${bytes.length} bytes, larger than the ${limit.bytes}-byte limit (${limit.option})`, tooLarge: true } satisfies Malformed;
      }
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
        // The decoder's own reason speaks of its buffer ("index out of range: 3 + 1 > 3"), not of the message.
        return { [MALFORMED]: problem ?? `request: not a valid fleetprune.v1.${type} message (its bytes end inside a field, or are not this message's encoding)` } satisfies Malformed;
      }
    };
    return [name, { ...method, requestDeserialize }];
  });
  return Object.fromEntries(methods) as ServiceDefinition;
}

/** Throws INVALID_ARGUMENT for a message that did not decode (see tolerantService). */
export function refuseMalformed(message: unknown): void {
  if (typeof message === 'object' && message !== null && MALFORMED in message) {
    const malformed = message as Malformed;
    throw new ServiceError(malformed.tooLarge ? 'payload_too_large' : 'bad_request', malformed[MALFORMED]);
  }
}
