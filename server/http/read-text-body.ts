import type { Request } from 'express';
import { ServiceError } from '../app/service-error.ts';
import { bodyTooLarge } from './body-size-limit.ts';

/** Reads a text request body up to `limit` bytes (413 beyond it). */
export async function readTextBody(req: Request, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw bodyTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw bodyTooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new ServiceError('bad_request', 'body: empty; send the rollout spec');
  return text;
}
