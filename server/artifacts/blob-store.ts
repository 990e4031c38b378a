import { createHash, randomBytes } from 'node:crypto';
import { constants, type ReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Mutex } from '../../shared/util/mutex.ts';
import { ensureWritableDirectory } from '../../shared/util/fs-checks.ts';
import { ServiceError } from '../app/service-error.ts';

export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export interface BlobInfo {
  sha256: string;
  bytes: number;
}

/**
 * Content-addressed files under `root/<sha256[0:2]>/<sha256>`. A blob is written to `root/tmp`,
 * hashed while it streams in, fsynced and only then renamed to its address, so a crash never
 * leaves a partial file at an address, and an address always holds the bytes it names.
 *
 * A blob's mtime is when it was last stored or claimed for a registration. Garbage collection
 * removes only unreferenced blobs older than a grace period. Servers on PostgreSQL share this
 * directory and have no lock in common, so the file system orders a collection against claims
 * and uploads (of this process or another):
 * - a claim sets the mtime by the blob's address (utimes): it succeeds only while the blob is
 *   there, and then makes it young;
 * - a collection first moves a blob it found idle out of its address into `root/gc` (setAside, an
 *   atomic rename), and only then decides (settleSetAside): a blob that a claim made young before
 *   the move, or that a version now references, is put back; any other is unlinked;
 * - a claim (or a download) that finds no blob at the address takes it back from `root/gc`
 *   (bumping its mtime and renaming it back) if it is there; whichever of that rename and the
 *   collection's unlink comes first wins, so either the claim returns the blob and it stays, or it
 *   returns null (the blob is not stored: the registration is refused as for a file never uploaded);
 * - every rename onto an address puts a file just written or just bumped there, so replacing a
 *   copy of the same bytes (two servers storing one blob) never makes a claimed blob look idle.
 * A collection that dies leaves blobs in `root/gc`: the next one (or a claim) settles them the
 * same way. Prefix directories are never removed (there are at most 256), so an upload moving
 * into one never finds it gone.
 */
export class BlobStore {
  readonly root: string;
  readonly #tmp: string;
  /** Blobs a garbage collection has moved out of their address and not yet removed or put back. */
  readonly #setAside: string;
  /** Copies found damaged (their bytes hash to something else), moved out of their address: kept for the operator to look at. */
  readonly #damaged: string;
  readonly #lock = new Mutex();
  /** Partial uploads this store is writing: never stale, however long their sender pauses. */
  readonly #uploading = new Set<string>();

  constructor(root: string) {
    this.root = root;
    this.#tmp = join(root, 'tmp');
    this.#setAside = join(root, 'gc');
    this.#damaged = join(root, 'damaged');
  }

  /**
   * Creates the directories and removes uploads a crash left half-written: those idle for
   * `staleAfterMs` (default 1 h). Younger ones may belong to another server sharing this
   * directory, still uploading.
   */
  async open(staleAfterMs = 3_600_000): Promise<void> {
    // A file in the way is refused in one line naming it (a UserError), not as an internal error.
    await ensureWritableDirectory(this.#tmp, 'blob store');
    await ensureWritableDirectory(this.#setAside, 'blob store');
    await ensureWritableDirectory(this.#damaged, 'blob store');
    await this.removeStaleUploads(Date.now() - staleAfterMs);
  }

  /** Removes partial uploads last written before `cutoffMs`; returns how many (and their bytes). */
  async removeStaleUploads(cutoffMs: number, dryRun = false): Promise<{ count: number; bytes: number }> {
    const removed = { count: 0, bytes: 0 };
    for (const name of await readdir(this.#tmp).catch(() => [] as string[])) {
      const path = join(this.#tmp, name);
      if (this.#uploading.has(path)) continue;
      const info = await stat(path).catch(() => null);
      if (!info || info.mtimeMs >= cutoffMs) continue;
      if (!dryRun) await rm(path, { recursive: true, force: true });
      removed.count++;
      removed.bytes += info.size;
    }
    return removed;
  }

  pathOf(sha256: string): string {
    if (!SHA256_PATTERN.test(sha256)) throw new ServiceError('bad_request', `not a sha256: ${JSON.stringify(sha256.length > 80 ? `${sha256.slice(0, 80)}…` : sha256)} (64 lowercase hex digits)`);
    return join(this.root, sha256.slice(0, 2), sha256);
  }

  async stat(sha256: string): Promise<BlobInfo | null> {
    try {
      const info = await stat(this.pathOf(sha256));
      return info.isFile() ? { sha256, bytes: info.size } : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  /**
   * All stored blobs (for tests and garbage collection). Read without the lock: a prefix directory
   * that a collection removes meanwhile (one of an older version, sharing the directory: this one
   * never removes them) held no blob, and is skipped.
   */
  async list(): Promise<string[]> {
    const found: string[] = [];
    for (const prefix of await readdir(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
      const names = await readdir(join(this.root, prefix)).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [] as string[];
        throw error;
      });
      for (const name of names) if (SHA256_PATTERN.test(name)) found.push(name);
    }
    return found.sort();
  }

  /**
   * Stores the bytes of `source` under `expectedSha256` (or under their own hash when null).
   * Refuses (storing nothing) when they exceed `maxBytes` or hash to something else.
   * `whileLocked` runs with the result before the store's lock is released, so no other put of
   * the same blob sees it stored until that step is done (it records the upload); if it throws,
   * the blob stays stored and put throws.
   */
  async put(
    source: AsyncIterable<Uint8Array>,
    expectedSha256: string | null,
    maxBytes: number,
    whileLocked?: (stored: BlobInfo & { created: boolean }) => Promise<void>,
  ): Promise<BlobInfo & { created: boolean }> {
    if (expectedSha256 !== null) this.pathOf(expectedSha256);
    const tmpPath = join(this.#tmp, `${Date.now()}-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let bytes = 0;
    const handle = await open(tmpPath, 'wx');
    this.#uploading.add(tmpPath);
    try {
      try {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > maxBytes) throw new ServiceError('payload_too_large', `blob exceeds the upload limit of ${maxBytes} bytes`);
          hash.update(chunk);
          await handle.write(chunk);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      const actual = hash.digest('hex');
      if (expectedSha256 !== null && actual !== expectedSha256) {
        throw new ServiceError('bad_request', `content hashes to ${actual}, not to ${expectedSha256}`);
      }
      return await this.#lock.run(async () => {
        const existing = await this.#refresh(actual);
        let stored: BlobInfo & { created: boolean };
        if (existing) {
          // The stored copy is replaced by this one, just verified: a copy damaged on disk (cut
          // short, or changed in place) is repaired by uploading the file again. Readers that have
          // the old file open read it whole.
          await this.#moveToAddress(tmpPath, actual);
          stored = { sha256: actual, bytes, created: false };
        } else {
          if (!(await this.#moveToAddress(tmpPath, actual))) {
            // Removed as stale by another server's blob collection sharing this directory while the sender paused.
            throw new ServiceError('conflict', 'the upload was idle so long that blob garbage collection removed it; upload the file again');
          }
          stored = { sha256: actual, bytes, created: true };
        }
        await whileLocked?.(stored);
        return stored;
      });
    } finally {
      this.#uploading.delete(tmpPath);
      await rm(tmpPath, { force: true });
    }
  }

  /**
   * Like stat, and marks the blob as just used (mtime now), so garbage collection leaves it alone
   * for its grace period: registrations claim the blobs a manifest lists before inserting it.
   * A blob that a collection (of any server sharing the directory) is removing at this moment is
   * either kept by the claim or not stored (null), never returned and then removed.
   */
  claim(sha256: string): Promise<BlobInfo | null> {
    return this.#lock.run(() => this.#refresh(sha256));
  }

  /** The blob's size if it was last stored or claimed before `cutoffMs` (what setAside would move), else null. */
  async idleBytes(sha256: string, cutoffMs: number): Promise<number | null> {
    const info = await statOrNull(this.pathOf(sha256));
    return info?.isFile() && info.mtimeMs < cutoffMs ? info.size : null;
  }

  /**
   * Garbage collection, first step: moves the blob out of its address into `root/gc` if it was
   * last stored or claimed before `cutoffMs` (epoch ms). Returns where it went, or null when it is
   * younger (or gone). Nothing is removed until settleSetAside.
   */
  async setAside(sha256: string, cutoffMs: number): Promise<string | null> {
    const path = this.pathOf(sha256);
    const info = await statOrNull(path);
    if (!info?.isFile() || info.mtimeMs >= cutoffMs) return null;
    const aside = join(this.#setAside, `${sha256}.${randomBytes(6).toString('hex')}`);
    await mkdir(this.#setAside, { recursive: true });
    try {
      await rename(path, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null; // another collection took it first
      throw error;
    }
    return aside;
  }

  /**
   * Garbage collection, second step, for every blob in `root/gc`: the ones this collection set
   * aside, and any another collection left there (one that died, or one running now in another
   * server). A blob that `isReferenced`, or whose mtime is not before `cutoffMs` (a claim made it
   * young before it was moved), goes back to its address; any other is removed. With `dryRun`
   * nothing changes, and what would be removed is reported.
   * Returns, per blob, where it was in `root/gc`, its size and whether it was (or would be)
   * removed; a blob that another collection or a claim settled first is not listed.
   */
  async settleSetAside(
    cutoffMs: number,
    isReferenced: (sha256: string) => boolean,
    dryRun = false,
  ): Promise<{ sha256: string; path: string; bytes: number; removed: boolean }[]> {
    const settled: { sha256: string; path: string; bytes: number; removed: boolean }[] = [];
    for (const name of (await readdirOrEmpty(this.#setAside)).sort()) {
      const sha256 = name.slice(0, 64);
      if (!SHA256_PATTERN.test(sha256) || name[64] !== '.') continue;
      const path = join(this.#setAside, name);
      const info = await statOrNull(path);
      if (!info?.isFile()) continue;
      if (isReferenced(sha256) || info.mtimeMs >= cutoffMs) {
        if (!dryRun && !(await this.#putBack(path, sha256))) continue;
        settled.push({ sha256, path, bytes: info.size, removed: false });
        continue;
      }
      if (!dryRun) {
        try {
          await unlink(path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // a claim took it back, or another collection settled it
          throw error;
        }
      }
      settled.push({ sha256, path, bytes: info.size, removed: true });
    }
    return settled;
  }

  /**
   * Stat, and mtime now, by the blob's address: the utimes succeeds only while the blob is there,
   * which is what keeps a collection from removing it (see the class comment). A blob that a
   * collection has just set aside is taken back.
   */
  async #refresh(sha256: string): Promise<BlobInfo | null> {
    const path = this.pathOf(sha256);
    // Each round ends with the blob taken back to its address; another collection can set it aside
    // again only if it is idle, which takes the grace period: two rounds are plenty, three are safe.
    for (let round = 0; round < 3; round++) {
      const info = await this.stat(sha256);
      if (info) {
        try {
          const now = new Date();
          await utimes(path, now, now);
          return info;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      // Not at its address: a collection may have set it aside and not decided yet.
      if (!(await this.#takeBack(sha256))) return null;
    }
    return null;
  }

  /**
   * Puts back a blob of `root/gc` that a collection has not removed yet; false when there is none
   * and the blob is not at its address either. A concurrent take-back (another download or claim,
   * here or in another server) may win the rename: the blob is then at its address, so true.
   */
  async #takeBack(sha256: string): Promise<boolean> {
    let found = false;
    for (const name of await readdirOrEmpty(this.#setAside)) {
      if (!name.startsWith(`${sha256}.`)) continue;
      if (await this.#putBack(join(this.#setAside, name), sha256)) found = true;
    }
    return found || (await statOrNull(this.pathOf(sha256))) !== null;
  }

  /**
   * Moves a blob from `root/gc` back to its address, marked as just used first (a copy it replaces
   * may have been claimed). False when the collection that set it aside, or another claim, got to it first.
   */
  async #putBack(path: string, sha256: string): Promise<boolean> {
    try {
      const now = new Date();
      await utimes(path, now, now);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    return this.#moveToAddress(path, sha256);
  }

  /**
   * Renames a file (just written or just marked as used) to the address of `sha256`, durably;
   * false when the file is gone. A prefix directory removed between its mkdir and the rename (by a
   * collection of an older version sharing the directory) is made again.
   */
  async #moveToAddress(from: string, sha256: string): Promise<boolean> {
    const dir = join(this.root, sha256.slice(0, 2));
    for (let attempt = 1; ; attempt++) {
      await mkdir(dir, { recursive: true });
      try {
        await rename(from, this.pathOf(sha256));
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Something other than a file where the blob belongs (a directory made by hand): said so, not a 500.
        if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') {
          throw new ServiceError('conflict', `the server's blob store holds something other than a file where blob ${sha256} belongs (${code} at ${this.pathOf(sha256)}): its administrator must remove it; then push again`);
        }
        if (code !== 'ENOENT') throw error;
        if (attempt === 3 || !(await statOrNull(from))) return false;
      }
    }
    await fsyncDirectory(dir);
    return true;
  }

  /**
   * Moves the copy `opened` read from out of the blob's address into `root/damaged` (its bytes
   * hash to something else), so the blob reads as not stored: `models push` then uploads it again,
   * and downloads fail at once rather than after every byte. Returns where it went; null when the
   * address holds another copy by now (an upload replaced it) or none.
   */
  setAsideDamaged(sha256: string, opened: OpenBlob): Promise<string | null> {
    return this.#lock.run(async () => {
      const path = this.pathOf(sha256);
      const info = await statOrNull(path);
      if (!info || info.dev !== opened.file.dev || info.ino !== opened.file.ino) return null;
      const aside = join(this.#damaged, `${sha256}.${new Date().toISOString().replace(/[:.]/g, '-')}`);
      await mkdir(this.#damaged, { recursive: true });
      try {
        await rename(path, aside);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
      return aside;
    });
  }

  /** What is at the blob's address when it is not a regular file (a directory, a FIFO…), or null: for messages. */
  async otherThanFile(sha256: string): Promise<string | null> {
    const info = await lstat(this.pathOf(sha256)).catch(() => null);
    if (!info || info.isFile()) return null;
    return info.isDirectory() ? 'a directory' : info.isFIFO() ? 'a FIFO' : info.isSymbolicLink() ? 'a symbolic link to no file' : info.isSocket() ? 'a socket' : 'a device file';
  }

  /** Whether a copy of the blob was found damaged and set aside (setAsideDamaged). */
  async hasDamagedCopy(sha256: string): Promise<boolean> {
    return (await readdirOrEmpty(this.#damaged)).some((name) => name.startsWith(`${sha256}.`));
  }

  /**
   * Opens a stored blob for reading; null when it is not stored. The open file reads whole even if
   * garbage collection (of another server sharing the directory) removes the blob meanwhile, so a
   * download that found the blob sends all of it. A blob a collection has set aside and not yet
   * removed is taken back first (as a claim does).
   */
  async openForRead(sha256: string): Promise<OpenBlob | null> {
    let handle: FileHandle | null = null;
    for (let round = 0; !handle; round++) {
      try {
        // Without blocking: a FIFO made at the address by hand would hold the open (and a thread of
        // libuv's pool) until a writer came. Reads of a regular file are not affected.
        handle = await open(this.pathOf(sha256), constants.O_RDONLY | constants.O_NONBLOCK);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        // Set aside by a collection: one that died there would leave a version's file missing until
        // the next collection (a registration claimed it just before it was moved). Taken back.
        if (round === 2 || !(await this.#takeBack(sha256))) return null;
      }
    }
    try {
      const info = await handle.stat();
      if (info.isFile()) return new OpenBlob(handle, info.size, { dev: info.dev, ino: info.ino });
    } catch (error) {
      await handle.close();
      throw error;
    }
    await handle.close();
    return null;
  }
}

/** A blob opened by BlobStore.openForRead. */
export class OpenBlob {
  readonly bytes: number;
  /** The file it opened (a copy replaced since has another). */
  readonly file: { dev: number; ino: number };
  readonly #handle: FileHandle;
  #streamed = false;

  constructor(handle: FileHandle, bytes: number, file: { dev: number; ino: number }) {
    this.#handle = handle;
    this.bytes = bytes;
    this.file = file;
  }

  /**
   * Bytes [start, end] (inclusive), read `chunkBytes` at a time (default 1 MiB: per-read overhead
   * dominates at fs's default 64 KiB); at most once. The stream closes the file when it ends or is
   * destroyed.
   */
  stream(range?: { start: number; end: number }, chunkBytes = 1024 * 1024): ReadStream {
    if (this.#streamed) throw new Error('an open blob is streamed once');
    this.#streamed = true;
    return this.#handle.createReadStream({ ...(range ? { start: range.start, end: range.end } : {}), highWaterMark: chunkBytes }) as ReadStream;
  }

  /** Closes the file unless a stream has it (that stream closes it when it ends or is destroyed). Safe to call more than once. */
  async close(): Promise<void> {
    if (!this.#streamed) await this.#handle.close();
  }
}

async function statOrNull(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

async function readdirOrEmpty(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
