import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fsyncDirectory } from '../util/atomic-file.ts';
import { errorMessage } from '../util/errors.ts';
import { MANIFEST_FILE } from './manifest.ts';

/** The prefix of the hidden directories a move in place keeps inside the artifact directory while it runs. */
const IN_PLACE_PREFIX = '.fleetprune-';

/**
 * The name of a directory a move in place (replaceInPlace) left in the artifact directory when it
 * was killed: the staged copy (incoming) or what it had moved out (outgoing). The next write of
 * that directory replaces them with the rest (see holdsArtifact).
 */
export const IN_PLACE_LEFTOVER = /^\.fleetprune-(incoming|outgoing)-[0-9a-f]{12}$/;

/**
 * Moves the artifact staged in `staging` into `dir` entry by entry, for a `dir` that cannot be
 * replaced by a rename: a mount point (a Docker volume: rename(2) fails with EBUSY), or a
 * directory of an overlay's lower layer (EXDEV). `dir` keeps its own inode (and owner and mode);
 * what it held (an artifact, checked by the caller) is replaced.
 *
 * The same guarantees as the rename, as far as a directory's entries allow:
 * - Nothing half-written is seen as an artifact: the staged files are copied (`staging` is on
 *   the parent's file system) into a hidden directory inside `dir` and fsynced first; then the
 *   old manifest.json leaves first and the new one arrives last, so `dir` holds a manifest only
 *   when every file it lists is in place (readers find no manifest in between, as they find no
 *   directory in the middle of a rename).
 * - A failure leaves the previous artifact: a failed copy (the volume is full) has not touched
 *   it, and a failed move puts every entry back (the manifest last) before the error is thrown.
 */
export async function replaceInPlace(staging: string, dir: string): Promise<void> {
  const tag = randomBytes(6).toString('hex');
  const incoming = join(dir, `${IN_PLACE_PREFIX}incoming-${tag}`);
  const outgoing = join(dir, `${IN_PLACE_PREFIX}outgoing-${tag}`);
  try {
    await copyTreeSynced(staging, incoming);
    const previous = manifestFirst((await readdir(dir)).filter((name) => name !== basename(incoming)));
    const next = manifestFirst(await readdir(incoming)).reverse();
    await mkdir(outgoing);
    await swapEntries(dir, previous, next, incoming, outgoing);
  } finally {
    await rm(incoming, { recursive: true, force: true });
  }
  // Only now, the new artifact in place: the old one is gone for good.
  await rm(outgoing, { recursive: true, force: true });
  await fsyncDirectory(dir);
}

/** `names` with manifest.json (if there) first. */
function manifestFirst(names: string[]): string[] {
  return [...names.filter((name) => name === MANIFEST_FILE), ...names.filter((name) => name !== MANIFEST_FILE)];
}

/**
 * Moves `previous` (manifest first) from `dir` into `outgoing`, then `next` (manifest last) from
 * `incoming` into `dir`, with an fsync of `dir` around each manifest so that after a crash the
 * manifest is never there without the rest. On a failure, undoes what it moved, in reverse.
 */
async function swapEntries(dir: string, previous: string[], next: string[], incoming: string, outgoing: string): Promise<void> {
  const undo: Array<() => Promise<void>> = [];
  const move = async (from: string, to: string, name: string) => {
    await rename(join(from, name), join(to, name));
    undo.push(() => rename(join(to, name), join(from, name)));
    if (name === MANIFEST_FILE) await fsyncDirectory(dir);
  };
  try {
    for (const name of previous) await move(dir, outgoing, name);
    for (const name of next) {
      if (name === MANIFEST_FILE) await fsyncDirectory(dir);
      await move(incoming, dir, name);
    }
  } catch (error) {
    let stranded = false;
    for (const step of undo.reverse()) await step().catch(() => (stranded = true));
    // Never deleted when it still holds the previous artifact's files: the error names it.
    if (stranded) {
      throw Object.assign(new Error(`${errorMessage(error)}; the previous artifact could not be put back whole and what is left of it is in ${outgoing}`, { cause: error }), {
        code: (error as NodeJS.ErrnoException).code,
      });
    }
    await rmdir(outgoing).catch(() => {});
    await fsyncDirectory(dir).catch(() => {});
    throw error;
  }
}

/** Copies the directory tree `from` (directories and regular files only, as staged) to a new `to`, every file and directory fsynced. */
async function copyTreeSynced(from: string, to: string): Promise<void> {
  await mkdir(to);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const [source, target] = [join(from, entry.name), join(to, entry.name)];
    if (entry.isDirectory()) {
      await copyTreeSynced(source, target);
    } else if (entry.isFile()) {
      await copyFile(source, target, constants.COPYFILE_EXCL);
      const handle = await open(target, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } else {
      throw new Error(`staged artifact entry ${source} is neither a file nor a directory`);
    }
  }
  await fsyncDirectory(to);
}
