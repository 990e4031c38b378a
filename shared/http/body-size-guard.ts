import type { IncomingMessage } from 'node:http';

/**
 * Calls `refuse` as soon as a request body is known to be over `limit` bytes: at once when its
 * declared Content-Length says so (then returns false: nothing is read), else when the bytes
 * received pass it. body-parser refuses an oversized body only once it has read all of it, or
 * never when the declared length is never sent. Compressed bodies count by the bytes sent; the
 * body reader still applies its own limit to what they inflate to.
 */
export function guardBodySize(req: IncomingMessage, limit: number, refuse: () => void): boolean {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    refuse();
    return false;
  }
  let received = 0;
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= limit) return;
    req.off('data', count);
    refuse();
  };
  req.on('data', count);
  req.once('end', () => req.off('data', count));
  return true;
}
