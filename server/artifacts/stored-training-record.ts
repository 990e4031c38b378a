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
  const blob = await blobs.openForRead(listed.sha256);
  if (!blob) return null;
  const chunks: Buffer[] = [];
  try {
    if (blob.bytes !== listed.bytes) return null;
    for await (const chunk of blob.stream()) chunks.push(chunk as Buffer);
  } finally {
    await blob.close();
  }
  const bytes = Buffer.concat(chunks);
  if (createHash('sha256').update(bytes).digest('hex') !== listed.sha256) return null;
  const parsed = parseTrainingRecord(bytes);
  return 'record' in parsed ? parsed.record : null;
}
