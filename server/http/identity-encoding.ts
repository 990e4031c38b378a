import type { IncomingMessage } from 'node:http';
import { ServiceError } from '../app/service-error.ts';

/**
 * The 415 for a body sent with a Content-Encoding other than identity, to routes that read the
 * bytes as they arrive, undecoded (undefined when there is none); `hint` says how to send it instead.
 */
export function encodedBodyRefusal(req: IncomingMessage, hint: string): ServiceError | undefined {
  const encoding = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  return encoding === 'identity' || encoding === '' ? undefined : new ServiceError('unsupported_media_type', `body: unsupported content encoding "${encoding}"; ${hint}`);
}
