import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { ServiceError } from '../app/service-error.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { blobNotFound, DamagedBlobError, verifiedChunks, type OnDamagedBlob } from '../artifacts/damaged-blob.ts';
import { ResponseClosedError } from './send-error.ts';

/**
 * Sends a stored blob with resumable-download semantics: strong ETag `"<sha256>"` (the content
 * never changes), If-Match that lists no such tag → 412, If-None-Match → 304, a single `bytes=` Range → 206 with Content-Range (honoured
 * only if If-Range, when sent, still matches the ETag), an unsatisfiable range → 416. A Range
 * header that does not parse, and a multi-range request, get the whole file (200).
 */
const IMMUTABLE = 'private, max-age=31536000, immutable';

/**
 * `onBody` is told of every piece of the body handed to the connection (none for HEAD, 304 or
 * 416): the bytes actually served, also of a download cut short. A download whose connection
 * closes before its last byte (the client aborted it) rejects with a ResponseClosedError, which
 * sendError logs at info, as no failure of the server; a failure to read the blob rejects with
 * that failure, an error.
 */
export async function sendBlob(
  req: Request,
  res: Response,
  blobs: BlobStore,
  sha256: string,
  onBody: (bytes: number) => void = () => {},
  onDamaged: OnDamagedBlob = async () => null,
): Promise<void> {
  // Opened before anything is answered: the open file reads whole even if another server's garbage
  // collection removes the blob now. Closed when the response ends, unless its stream below has it.
  const info = await blobs.openForRead(sha256);
  if (!info) throw await blobNotFound(blobs, sha256);
  res.once('close', () => void info.close().catch(() => {}));
  const etag = `"${sha256}"`;
  res.setHeader('Accept-Ranges', 'bytes');
  // If-Match compares strongly and comes first (RFC 9110 §13.2.2): a client that holds another
  // file's tag, or a weak one, is told so (412) rather than sent this blob.
  const ifMatch = req.headers['if-match'];
  if (ifMatch !== undefined && !ifMatch.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*')) {
    throw new ServiceError('precondition_failed', `If-Match: none of its tags is this blob's ETag ${etag} (strong comparison)`);
  }
  const ifNoneMatch = req.headers['if-none-match'];
  // If-None-Match compares weakly (RFC 9110 §13.1.2): W/"<sha256>", as a proxy that re-encoded the body sends it back, matches too.
  if (ifNoneMatch && ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*')) {
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', IMMUTABLE);
    res.status(304).end();
    return;
  }
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  const honourRange = rangeHeader !== undefined && (ifRange === undefined || String(ifRange).trim() === etag);
  const range = honourRange ? parseRange(rangeHeader, info.bytes) : null;
  if (range === 'unsatisfiable') {
    // The 416 is a JSON error (sendError): neither the blob's type nor cacheable like its bytes.
    res.setHeader('Content-Range', `bytes */${info.bytes}`);
    throw new ServiceError('range_not_satisfiable', `range ${rangeHeader} is outside the ${info.bytes}-byte blob`);
  }
  const bodyless = req.method === 'HEAD' || info.bytes === 0;
  const stream = bodyless ? undefined : info.stream(range ?? undefined);
  // A whole blob is checked against its hash as it is sent (verifiedChunks); a range cannot be.
  // Its first piece is read before the headers are set: a damaged copy found then gets an error.
  const whole = !range || (range.start === 0 && range.end === info.bytes - 1);
  const source = stream && whole ? await firstPieceRead(verifiedChunks(stream as AsyncIterable<Buffer>, sha256, info, onDamaged)) : stream;
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', IMMUTABLE);
  res.setHeader('Content-Type', 'application/octet-stream');
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${info.bytes}`);
    res.setHeader('Content-Length', String(range.end - range.start + 1));
  } else {
    res.status(200);
    res.setHeader('Content-Length', String(info.bytes));
  }
  if (!stream || !source) {
    res.end();
    return;
  }
  // Which ended the transfer: the response closing before its end while the blob still reads well
  // is the connection's doing (the client went away); a read failure closes the response after it.
  let sourceFailed = false;
  let closedFirst = res.destroyed; // gone before the first byte
  stream.once('error', () => {
    if (!closedFirst) sourceFailed = true;
  });
  res.once('close', () => {
    if (!res.writableFinished && !sourceFailed) closedFirst = true;
  });
  let sent = 0;
  try {
    await pipeline(
      source,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          if (res.destroyed) return;
          sent += chunk.length;
          onBody(chunk.length);
          yield chunk;
        }
      },
      res,
    );
  } catch (error) {
    if (error instanceof DamagedBlobError) throw error;
    if (closedFirst) throw new ResponseClosedError(`the connection closed after ${sent} of ${Number(res.getHeader('Content-Length'))} bytes`, { cause: error });
    throw error;
  }
}

/**
 * `chunks`, its first piece read before anything is sent: a damaged copy small enough to be all
 * held back (verifiedChunks) is found before the response starts, and answered with an error
 * (500, the copy set aside) rather than a connection closed without a status line.
 */
async function firstPieceRead(chunks: AsyncGenerator<Buffer>): Promise<AsyncIterable<Buffer>> {
  let first: IteratorResult<Buffer>;
  try {
    first = await chunks.next();
  } catch (error) {
    if (error instanceof DamagedBlobError) throw new DamagedBlobError(error.sha256, error.actual, false);
    throw error;
  }
  return (async function* () {
    if (first.done) return;
    yield first.value;
    yield* chunks;
  })();
}

/**
 * One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null to send everything; 'unsatisfiable' for 416.
 * As RFC 9110 §14.2 asks, a header that does not parse as one byte range (`bytes=abc`, `bytes=-`,
 * another unit) is ignored rather than refused, and so is a multi-range request: the whole blob is
 * sent. Only a range that parses but selects nothing of the blob (`bytes=N-` at or past its end,
 * `bytes=9-3`, `bytes=-0`) is unsatisfiable.
 */
export function parseRange(header: string, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  const match = /^bytes=[ \t]*(?:(\d+)-(\d*)|-(\d+))[ \t]*$/i.exec(header.trim());
  if (!match) return null;
  const [, first, last, suffixLength] = match;
  if (suffixLength !== undefined) {
    const suffix = Number(suffixLength);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (start >= size || (last !== '' && Number(last) < start)) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

