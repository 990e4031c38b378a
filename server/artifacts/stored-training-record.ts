import { createHash } from 'node:crypto';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { MAX_TRAINING_BYTES, parseTrainingRecord, TRAINING_FILE, type TrainingRecord } from '../../shared/artifact/training-record.ts';
import type { BlobStore } from './blob-store.ts';
import type { OnDamagedBlob } from './damaged-blob.ts';

/**
 * The training.json a registered version's manifest lists, read from the blob store: null when the
 * artifact has none (written before it existed, or by another tool), or when its blob is missing,
 * unreadable, or not a record. A stored copy whose bytes are not the ones the manifest hashed is
 * damaged: `onDamaged` sets it aside, counts and logs it, as a download does, so that the next
 * `models push` uploads it again. The version is shown either way: what trained it is a
 * description, not something the fleet relies on.
 */
export async function storedTrainingRecord(manifest: Manifest, blobs: BlobStore, onDamaged?: OnDamagedBlob): Promise<TrainingRecord | null> {
  const listed = manifest.files[TRAINING_FILE];
  if (!listed || listed.bytes > MAX_TRAINING_BYTES) return null;
  try {
    const blob = await blobs.openForRead(listed.sha256);
    if (!blob) return null;
    let bytes: Buffer;
    try {
      // Another size than the manifest's is damage already: not read into memory to learn it.
      if (blob.bytes !== listed.bytes) {
        await onDamaged?.(listed.sha256, `something else (the copy is ${blob.bytes} bytes, not ${listed.bytes})`, blob);
        return null;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of blob.stream()) chunks.push(chunk as Buffer);
      bytes = Buffer.concat(chunks);
    } finally {
      await blob.close();
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== listed.sha256) {
      await onDamaged?.(listed.sha256, actual, blob);
      return null;
    }
    const parsed = parseTrainingRecord(bytes);
    return 'record' in parsed ? parsed.record : null;
  } catch {
    // Unreadable (EIO, EACCES): the version is shown without it.
    return null;
  }
}
