import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UserError, errorMessage } from './errors.ts';

/**
 * Fails fast, before any long work, when `dir` cannot be created or written (its parent too,
 * since artifacts are staged next to their final place and renamed into it). Creates nothing:
 * the nearest existing directory on the way to `dir` is probed, so a run that fails later (or
 * is interrupted) leaves no empty directories behind.
 */
export async function assertWritableDirectory(dir: string, what = 'output directory', flag?: string): Promise<void> {
  const refuse = (reason: string, cause?: unknown) => new UserError(`${flag ? `${flag}: ` : ''}cannot write ${what} ${dir}: ${reason}`, { cause });
  let existing: { path: string; isDirectory: boolean };
  try {
    existing = await nearestExisting(dir);
  } catch (error) {
    throw refuse((error as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'a parent is not a directory' : describeFsError(error), error);
  }
  const exists = existing.path === resolve(dir);
  if (!existing.isDirectory) throw refuse(exists ? 'it exists and is not a directory' : `${existing.path} is not a directory`);
  // Staging happens next to dir: its parent must be writable as well as dir itself.
  for (const target of exists ? [dirname(dir), dir] : [existing.path]) {
    try {
      await probeWritable(target);
    } catch (error) {
      // The probe file's name means nothing to the user: name the directory that refused it.
      throw refuse(target === dir ? describeFsError(error) : `cannot create files in ${target} (${describeFsError(error)})`, error);
    }
  }
}

/** Creates and removes a file in `dir`; throws the file system's error when `dir` does not take one. */
async function probeWritable(dir: string): Promise<void> {
  const probe = join(dir, `.fleetprune-write-check-${randomBytes(4).toString('hex')}`);
  await writeFile(probe, '', { flag: 'wx' });
  await rm(probe);
}

/** The nearest existing path on the way up to `dir` (`dir` itself when it exists); throws stat's other errors. */
async function nearestExisting(dir: string): Promise<{ path: string; isDirectory: boolean }> {
  for (let path = resolve(dir); ; path = dirname(path)) {
    try {
      return { path, isDirectory: (await stat(path)).isDirectory() };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(path) === path) throw error;
    }
  }
}

/**
 * Makes sure `dir` is a directory this process can write, creating it (and its parents) when
 * missing; otherwise a UserError naming `flag`: `--data-dir: /srv/x is not a directory`. Returns
 * the first directory it created (the topmost; see removeEmptyTree), or undefined when `dir` existed.
 */
export async function ensureWritableDirectory(dir: string, flag: string): Promise<string | undefined> {
  // Where the directories would be created must take them, checked first: mkdir({recursive})
  // loops forever under a directory that refuses new entries with ENOENT (/proc, /sys).
  let ancestor;
  try {
    ancestor = await nearestExisting(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new UserError(`${flag}: cannot create ${dir} (a parent is not a directory)`, { cause: error });
    throw new UserError(`${flag}: cannot create ${dir} (${describeFsError(error)})`, { cause: error });
  }
  if (ancestor.path === resolve(dir) && !ancestor.isDirectory) throw new UserError(`${flag}: ${dir} is not a directory`);
  if (ancestor.path !== resolve(dir)) {
    if (!ancestor.isDirectory) throw new UserError(`${flag}: cannot create ${dir} (a parent is not a directory)`);
    try {
      await probeWritable(ancestor.path);
    } catch (error) {
      throw new UserError(`${flag}: cannot create ${dir} (${ancestor.path} is not a writable directory: ${describeFsError(error)})`, { cause: error });
    }
  }
  let created: string | undefined;
  try {
    created = await mkdir(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UserError(`${flag}: ${dir} is not a directory`, { cause: error });
    if (code === 'ENOTDIR') throw new UserError(`${flag}: cannot create ${dir} (a parent is not a directory)`, { cause: error });
    throw new UserError(`${flag}: cannot create ${dir} (${describeFsError(error)})`, { cause: error });
  }
  try {
    await probeWritable(dir);
  } catch (error) {
    throw new UserError(`${flag}: cannot write in ${dir} (${describeFsError(error)})`, { cause: error });
  }
  return created;
}

/**
 * Removes `dir` when it holds nothing but (nested) empty directories, as a start that failed
 * leaves the ones it created; whether it did. Directories are removed bottom up with rmdir, which
 * refuses one that is not empty, so a file in the tree (even one written meanwhile) keeps it and
 * the directories above it: this never removes data.
 */
export async function removeEmptyTree(dir: string): Promise<boolean> {
  try {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !(await removeEmptyTree(join(dir, entry.name)))) return false;
    }
    await rmdir(dir);
    return true;
  } catch {
    return false;
  }
}

/** Makes sure `dir` exists and is a directory (it is only read); otherwise a UserError naming `flag`. */
export async function assertExistingDirectory(dir: string, flag: string): Promise<void> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UserError(`${flag}: ${code === 'ENOENT' ? `${dir} does not exist` : `cannot use ${dir} (${describeFsError(error)})`}`, { cause: error });
  }
  if (!info.isDirectory()) throw new UserError(`${flag}: ${dir} is not a directory`);
}

/**
 * Fails fast, before any long work, when the file `path` could not be written at the end: it
 * must be a writable regular file, or creatable in an existing directory. Leaves nothing behind:
 * an existing file is opened without truncating it, a new one is created and removed again.
 */
export async function assertWritableFile(path: string, flag: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new UserError(`${flag}: cannot write ${path} (${describeFsError(error)})`, { cause: error });
  }
  if (info?.isDirectory()) throw new UserError(`${flag}: ${path} is a directory`);
  try {
    if (info) {
      await (await open(path, 'r+')).close();
    } else {
      await (await open(path, 'wx')).close();
      await rm(path);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? `no directory ${dirname(path)}` : code === 'ENOTDIR' ? 'a parent is not a directory' : describeFsError(error);
    throw new UserError(`${flag}: cannot write ${path} (${reason})`, { cause: error });
  }
}

/**
 * `permission denied` for access errors, else the system's message without the path and call
 * it names (`ENOENT: no such file or directory, open '/proc/.x'` → `no such file or directory`):
 * callers name the path the user gave.
 */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'read-only file system';
  // A read of a directory: "EISDIR: illegal operation on a directory, read".
  if (code === 'EISDIR') return 'is a directory';
  if (code === 'ENOTDIR') return 'a parent is not a directory';
  const message = errorMessage(error);
  const system = code ? new RegExp(`^${code}: ([^,]+), \\w+ '`).exec(message) : null;
  return system ? system[1]! : message;
}
