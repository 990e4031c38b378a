import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` atomically: writes a sibling temp file, fsyncs it, renames it over `path`,
 * then fsyncs the directory so the rename itself is durable. After a crash at any point the
 * file holds either the old or the new content, never a mix.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    // A failed write names `path`, the file its reader knows, not the temp file (removed below).
    await writeNewFileSynced(temp, data, mode, path);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDirectory(dirname(path));
}

/**
 * Creates `path` (it must not exist) holding `data`, flushed to disk before it returns. A write or
 * sync that fails (a full disk: `ENOSPC: no space left on device, write`) names the file (`named`:
 * the one a temp file is written for), as node's own message of a failed open does: node names
 * none for an operation on an open file.
 */
export async function writeNewFileSynced(path: string, data: string | Uint8Array, mode = 0o644, named = path): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    throw namingPath(error, named);
  } finally {
    await handle.close();
  }
}

/** A system error without a path (a write on an open file) with `path` named in its message and set on it. */
function namingPath(error: unknown, path: string): unknown {
  const failure = error as NodeJS.ErrnoException;
  if (!(error instanceof Error) || typeof failure.code !== 'string' || failure.path !== undefined) return error;
  return Object.assign(new Error(`${failure.message} '${path}'`, { cause: error }), { code: failure.code, errno: failure.errno, syscall: failure.syscall, path });
}

/** Makes renames, creations and deletions inside `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
