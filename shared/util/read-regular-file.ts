import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** Opened without blocking on a FIFO (open(2) of a FIFO with no writer waits for one otherwise). */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/** Why a path could not be read as a file: `not a regular file`, `larger than N bytes`, or the system's error (its `code` kept). */
export class NotARegularFileError extends Error {
  constructor(readonly path: string, reason: string, readonly code?: string) {
    super(`${path}: ${reason}`);
    this.name = 'NotARegularFileError';
  }
}

/**
 * The UTF-8 text of the regular file at `path`, at most `maxBytes` long. A FIFO, a device
 * (/dev/zero), a directory or a socket is refused without reading from it, so a reader never
 * blocks on a pipe nobody writes or fills memory from an endless device; a larger file is refused
 * before it is read. System errors (ENOENT, EACCES, ...) are thrown as they are.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<string> {
  const file = await open(path, OPEN_FLAGS);
  try {
    const info = await file.stat();
    if (!info.isFile()) throw new NotARegularFileError(path, info.isDirectory() ? 'is a directory' : 'not a regular file', info.isDirectory() ? 'EISDIR' : undefined);
    if (info.size > maxBytes) throw new NotARegularFileError(path, `larger than ${maxBytes} bytes (${info.size})`);
    // The size is checked again on what is read: a file may grow after the stat, and some report
    // no size at all (/proc). At most maxBytes + 1 bytes are read.
    const chunks: Buffer[] = [];
    let total = 0;
    while (total <= maxBytes) {
      const chunk = Buffer.allocUnsafe(Math.min(maxBytes + 1 - total, Math.max(info.size + 1 - total, 64 * 1024)));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
    }
    if (total > maxBytes) throw new NotARegularFileError(path, `larger than ${maxBytes} bytes (it grew while read)`);
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await file.close();
  }
}
