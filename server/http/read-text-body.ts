import type { Request } from 'express';
import { ServiceError } from '../app/service-error.ts';
import { bodyTooLarge } from './body-size-limit.ts';
import { contentCharset, readsAsUtf8 } from '../../shared/http/content-charset.ts';
import { encodedBodyRefusal } from './identity-encoding.ts';
import { isUtf8 } from 'node:buffer';

/** Reads a text request body up to `limit` bytes (413 beyond it: `tooLarge`, by default naming --max-body-bytes). */
export async function readTextBody(req: Request, limit: number, tooLarge: () => ServiceError = () => bodyTooLarge(limit)): Promise<string> {
  // The bytes are read as they come, as UTF-8: a compressed body or another charset would be
  // misread (a gzip body called "not valid YAML", Latin-1 letters turned into U+FFFD).
  const encoded = encodedBodyRefusal(req, 'send the spec uncompressed');
  if (encoded) throw encoded;
  const charset = contentCharset(req.headers['content-type']);
  if (!readsAsUtf8(charset)) throw new ServiceError('unsupported_media_type', `body: unsupported charset "${charset!.toUpperCase()}"; send the spec as UTF-8`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks);
  if (!isUtf8(bytes)) throw new ServiceError('bad_request', `body: not valid UTF-8; send the spec as UTF-8`);
  const text = bytes.toString('utf8');
  if (text.trim() === '') throw new ServiceError('bad_request', 'body: empty; send the rollout spec');
  return text;
}
