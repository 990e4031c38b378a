import { constants as bufferConstants } from 'node:buffer';
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { decodeDataText } from '../../shared/data/data-text.ts';
import { ServiceError } from '../app/service-error.ts';
import { resolveInsideRoot } from './data-root.ts';
import type { PruneJobRequest, PruneRequestFields } from './prune-job-request.ts';

/** Opened without following a last-component symlink swapped in after the check, nor blocking on a FIFO. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * The CSV text of a job's data set. A server-side path is relative to `dataRoot` and must lead
 * (symlinks included) to a readable regular file inside it; without a data root paths are refused.
 * Every other path gets one answer, so a caller learns nothing about what exists outside the root.
 */
export async function readJobData(
  data: PruneJobRequest['data'],
  dataRoot: string | undefined,
  maxBytes: number,
  fields: Pick<PruneRequestFields, 'csv' | 'path'>,
): Promise<{ text: string; source: string }> {
  if ('csv' in data) return { text: data.csv, source: fields.csv };
  if (!dataRoot) throw new ServiceError('bad_request', `${fields.path}: server-side data paths are disabled (start the server with --data-root)`);
  const root = await realpath(dataRoot).catch(() => {
    // Not named: API callers do not see the server's paths.
    throw new ServiceError('bad_request', `${fields.path}: the server's --data-root does not exist (any more); ask its administrator`);
  });
  const unreadable = () =>
    new ServiceError('bad_request', `${fields.path}: no readable file ${JSON.stringify(data.path)} under the server's data root (give a path relative to it, without ..)`);
  const real = await resolveInsideRoot(root, data.path);
  if (real === null) throw unreadable();
  const file = await open(real, OPEN_FLAGS).catch(() => {
    throw unreadable();
  });
  try {
    // A directory on the way swapped for a symlink between the check and the open (O_NOFOLLOW
    // guards only the last part) would open a file elsewhere: what was opened is checked again.
    if ((await openedPath(file.fd)) !== real) throw unreadable();
    const info = await file.stat();
    if (!info.isFile()) throw unreadable();
    if (info.size > maxBytes) throw new ServiceError('payload_too_large', `${fields.path}: the file is ${info.size} bytes, more than the ${maxBytes} the server takes (its --max-body-bytes)`);
    // The server's --max-body-bytes may allow more than node reads as one text (a 500 with
    // ERR_STRING_TOO_LONG in the log, where an upload of the same file is refused up front).
    if (info.size > bufferConstants.MAX_STRING_LENGTH) {
      throw new ServiceError('payload_too_large', `${fields.path}: the file is ${info.size} bytes, more than node reads as one text (${bufferConstants.MAX_STRING_LENGTH} bytes); use a sample of its rows`);
    }
    return { text: decodeDataText(await file.readFile(), data.path), source: data.path };
  } finally {
    await file.close();
  }
}

/** The real path of an open file (Linux: /proc/self/fd); where the system cannot tell, null, and the file is refused. */
async function openedPath(fd: number): Promise<string | null> {
  return realpath(`/proc/self/fd/${fd}`).catch(() => null);
}
