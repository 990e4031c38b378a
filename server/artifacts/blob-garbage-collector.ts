import { z } from 'zod';
import type { Store } from '../store/store.ts';
import type { BlobStore } from './blob-store.ts';

/** Unreferenced blobs younger than this are never removed: an upload's registration may still be on its way. */
export const MIN_BLOB_GC_AGE_S = 60;
export const DEFAULT_BLOB_GC_AGE_S = 3600;
export const MAX_BLOB_GC_AGE_S = 10 * 365 * 86400;

/** POST /api/blobs/gc and gRPC Blobs.CollectGarbage. */
export const BlobGcRequestSchema = z.strictObject({
  dryRun: z.boolean().default(false).describe('report what would be removed, remove nothing'),
  minAgeSeconds: z
    .number()
    // First, and alone: 1e30 is also past the largest safe integer, a second limit nobody asked about.
    .max(MAX_BLOB_GC_AGE_S, { error: `must be at most ${MAX_BLOB_GC_AGE_S} s (ten years)`, abort: true })
    .int()
    .min(MIN_BLOB_GC_AGE_S, `must be at least ${MIN_BLOB_GC_AGE_S} s, so an upload whose registration is on its way is never removed`)
    .default(DEFAULT_BLOB_GC_AGE_S)
    .describe('keep unreferenced blobs stored or claimed less than this many seconds ago'),
});

export type BlobGcOptions = z.output<typeof BlobGcRequestSchema> & { actor: string };

export interface BlobGcResult {
  dryRun: boolean;
  /** Blobs in the store when the collection started, and any a collection that died left set aside. */
  scanned: number;
  /** Of those, listed by some registered version's manifest. */
  referenced: number;
  /** Unreferenced but stored or claimed within the grace period, so kept. */
  young: number;
  /** Removed (with dryRun: would be), by sha256. */
  removed: { sha256: string; bytes: number }[];
  /** Partial uploads (left by a crash mid-upload) idle past the grace period, removed too. */
  staleUploads: number;
  freedBytes: number;
}

/**
 * Removes blobs that no registered version lists: uploads whose registration never came (an
 * interrupted `models push`, a refused manifest). Versions are immutable and never deleted, so a
 * referenced blob is never a candidate. A candidate idle past the grace period is first moved
 * aside (BlobStore.setAside); once all are, the references are read again and each one is removed
 * unless a version registered meanwhile lists it or a claim made it young before it moved
 * (BlobStore.settleSetAside). A registration in flight, in this server or another sharing the
 * data directory, is therefore safe: its claim either keeps the blob or finds it gone (and the
 * registration is refused as for a file never uploaded). Blobs a collection that died left moved
 * aside are settled too (and counted as scanned). Each run that removes something is audited as
 * `blobs.gc`.
 */
export async function collectBlobGarbage(
  deps: { store: Store; blobs: BlobStore; freedBytes?: { inc(bytes: number): void } },
  options: BlobGcOptions,
): Promise<BlobGcResult> {
  const { store, blobs } = deps;
  const stored = await blobs.list();
  const referenced = await store.models.referencedBlobs();
  const cutoffMs = Date.now() - options.minAgeSeconds * 1000;
  const result: BlobGcResult = { dryRun: options.dryRun, scanned: stored.length, referenced: 0, young: 0, removed: [], staleUploads: 0, freedBytes: 0 };
  const setAside = new Set<string>();
  for (const sha256 of stored) {
    if (referenced.has(sha256)) {
      result.referenced++;
      continue;
    }
    if (options.dryRun) {
      const bytes = await blobs.idleBytes(sha256, cutoffMs);
      if (bytes === null) result.young++;
      else result.removed.push({ sha256, bytes });
      continue;
    }
    const path = await blobs.setAside(sha256, cutoffMs);
    if (path === null) result.young++;
    else setAside.add(path);
  }
  // After the moves: a version registered since the first read lists its blobs here.
  const stillReferenced = options.dryRun ? referenced : await store.models.referencedBlobs();
  for (const blob of await blobs.settleSetAside(cutoffMs, (sha256) => stillReferenced.has(sha256), options.dryRun)) {
    // Not set aside by this run: left by a collection that died (or set aside by one running now).
    if (!setAside.delete(blob.path)) result.scanned++;
    if (blob.removed) result.removed.push({ sha256: blob.sha256, bytes: blob.bytes });
    else if (stillReferenced.has(blob.sha256)) result.referenced++;
    else result.young++;
  }
  // Set aside by this run, then taken back by a claim (or settled by another collection) first: kept, as far as this run goes.
  result.young += setAside.size;
  result.removed.sort((a, b) => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0));
  for (const blob of result.removed) result.freedBytes += blob.bytes;
  const stale = await blobs.removeStaleUploads(cutoffMs, options.dryRun);
  result.staleUploads = stale.count;
  result.freedBytes += stale.bytes;
  if (!options.dryRun && (result.removed.length > 0 || stale.count > 0)) {
    await store.audit.append({
      at: new Date().toISOString(),
      actor: options.actor,
      action: 'blobs.gc',
      target: `${result.removed.length} blobs`,
      details: { freedBytes: result.freedBytes, removed: result.removed.map((blob) => blob.sha256), staleUploads: stale.count, minAgeSeconds: options.minAgeSeconds },
    });
    deps.freedBytes?.inc(result.freedBytes);
  }
  return result;
}
