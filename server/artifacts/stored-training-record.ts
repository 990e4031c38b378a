import { createHash } from 'node:crypto';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { MAX_TRAINING_BYTES, parseTrainingRecord, TRAINING_FILE, type TrainingRecord } from '../../shared/artifact/training-record.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * The training.json a registered version's manifest lists, read from the blob store: null when the
 * artifact has none (written before it existed, or by another tool), or when its blob is missing,
 * larger than a record can be, not the bytes the manifest hashed, or not a record. The version is
 * shown either way: what trained it is a description, not something the fleet relies on.
 */
export async function storedTrainingRecord(manifest: Manifest, blobs: BlobStore): Promise<TrainingRecord | null> {
  const listed = manifest.files[TRAINING_FILE];
  if (!listed || listed.bytes > MAX_TRAINING_BYTES) return null;
  let bytes: Buffer;
  try {
    const read = await readBlob(blobs, listed.sha256, listed.bytes);
    if (!read) return null;
    bytes = read;
  } catch {
    // Unreadable (EIO, EACCES): the version is shown without it.
    return null;
  }
  if (createHash('sha256').update(bytes).digest('hex') !== listed.sha256) return null;
  const parsed = parseTrainingRecord(bytes);
  return 'record' in parsed ? parsed.record : null;
}

/** The blob's bytes, or null when it is not stored or not `bytes` long. */
async function readBlob(blobs: BlobStore, sha256: string, bytes: number): Promise<Buffer | null> {
  const blob = await blobs.openForRead(sha256);
  if (!blob) return null;
  const chunks: Buffer[] = [];
  try {
    if (blob.bytes !== bytes) return null;
    for await (const chunk of blob.stream()) chunks.push(chunk as Buffer);
  } finally {
    await blob.close();
  }
  return Buffer.concat(chunks);
}
