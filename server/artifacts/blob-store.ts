import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink, utimes } from 'node:fs/promises';
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
 * removes only unreferenced blobs older than a grace period, and the check-and-remove runs under
 * the same lock as storing and claiming, so a blob that a registration is about to reference is
 * never removed underneath it.
 */
export class BlobStore {
  readonly root: string;
  readonly #tmp: string;
  readonly #lock = new Mutex();
  /** Partial uploads this store is writing: never stale, however long their sender pauses. */
  readonly #uploading = new Set<string>();

  constructor(root: string) {
    this.root = root;
    this.#tmp = join(root, 'tmp');
  }

  /**
   * Creates the directories and removes uploads a crash left half-written: those idle for
   * `staleAfterMs` (default 1 h). Younger ones may belong to another server sharing this
   * directory, still uploading.
   */
  async open(staleAfterMs = 3_600_000): Promise<void> {
    // A file in the way is refused in one line naming it (a UserError), not as an internal error.
    await ensureWritableDirectory(this.#tmp, 'blob store');
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
   * that another collection empties and removes meanwhile held no blob, and is skipped.
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
          stored = { ...existing, created: false };
        } else {
          await mkdir(join(this.root, actual.slice(0, 2)), { recursive: true });
          await rename(tmpPath, this.pathOf(actual)).catch((error: unknown) => {
            // Removed as stale by another server's blob collection sharing this directory while the sender paused.
            if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ServiceError('conflict', 'the upload was idle so long that blob garbage collection removed it; upload the file again');
            throw error;
          });
          await fsyncDirectory(join(this.root, actual.slice(0, 2)));
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
   */
  claim(sha256: string): Promise<BlobInfo | null> {
    return this.#lock.run(() => this.#refresh(sha256));
  }

  /**
   * Removes a blob if it was last stored or claimed before `cutoffMs` (epoch ms); with `dryRun`
   * only says whether it would. Returns the blob's size when it is (or would be) removed, else null.
   */
  removeIfIdleSince(sha256: string, cutoffMs: number, dryRun = false): Promise<number | null> {
    const path = this.pathOf(sha256);
    return this.#lock.run(async () => {
      let info;
      try {
        info = await stat(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
      if (!info.isFile() || info.mtimeMs >= cutoffMs) return null;
      if (dryRun) return info.size;
      await unlink(path);
      await rmdir(join(this.root, sha256.slice(0, 2))).catch(() => {}); // only when now empty
      return info.size;
    });
  }

  async #refresh(sha256: string): Promise<BlobInfo | null> {
    const info = await this.stat(sha256);
    if (info) {
      const now = new Date();
      await utimes(this.pathOf(sha256), now, now);
    }
    return info;
  }

  /**
   * A stream of bytes [start, end] (inclusive) of a stored blob, read `chunkBytes` at a time
   * (default 1 MiB: per-read overhead dominates at fs's default 64 KiB).
   */
  read(sha256: string, range?: { start: number; end: number }, chunkBytes = 1024 * 1024): ReadStream {
    return createReadStream(this.pathOf(sha256), { ...(range ? { start: range.start, end: range.end } : {}), highWaterMark: chunkBytes });
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
