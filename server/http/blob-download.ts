import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { ServiceError } from '../app/service-error.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';

/**
 * Sends a stored blob with resumable-download semantics: strong ETag `"<sha256>"` (the content
 * never changes), If-None-Match → 304, a single `bytes=` Range → 206 with Content-Range (honoured
 * only if If-Range, when sent, still matches the ETag), an unsatisfiable range → 416.
 * Multi-range requests get the whole file.
 */
export async function sendBlob(req: Request, res: Response, blobs: BlobStore, sha256: string): Promise<void> {
  const info = await blobs.stat(sha256);
  if (!info) throw new ServiceError('not_found', `no blob ${sha256}`);
  const etag = `"${sha256}"`;
  res.setHeader('ETag', etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
  res.setHeader('Content-Type', 'application/octet-stream');
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch && ifNoneMatch.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*')) {
    res.status(304).end();
    return;
  }
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  const honourRange = rangeHeader !== undefined && (ifRange === undefined || String(ifRange).trim() === etag);
  const range = honourRange ? parseRange(rangeHeader, info.bytes) : null;
  if (range === 'unsatisfiable') {
    res.setHeader('Content-Range', `bytes */${info.bytes}`);
    throw new ServiceError('range_not_satisfiable', `range ${rangeHeader} is outside the ${info.bytes}-byte blob`);
  }
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${info.bytes}`);
    res.setHeader('Content-Length', String(range.end - range.start + 1));
  } else {
    res.status(200);
    res.setHeader('Content-Length', String(info.bytes));
  }
  if (req.method === 'HEAD' || info.bytes === 0) {
    res.end();
    return;
  }
  await pipeline(blobs.read(sha256, range ?? undefined), res);
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null to send everything; 'unsatisfiable' for 416. */
export function parseRange(header: string, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return header.trim().startsWith('bytes=') && header.includes(',') ? null : 'unsatisfiable';
  const [, first, last] = match;
  if (first === '' && last === '') return 'unsatisfiable';
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}
