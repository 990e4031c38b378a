import { actorOf, type Principal } from '../auth/principal.ts';
import type { Store } from '../store/store.ts';
import type { BlobInfo, BlobStore } from './blob-store.ts';

/**
 * An uploaded file (HTTP PUT or gRPC UploadBlob): stored hash-checked and, when it is new, audited
 * as `blob.upload` with who sent it and its size. Re-uploads of a stored blob change nothing and
 * leave no entry, unless the blob has none: the entry is written after the blob is stored, so an
 * upload whose entry failed (its request failed too) is audited when it is sent again, naming
 * whoever sent it then. The check and the entry happen under the blob store's lock, so two
 * uploads of the same new blob at once leave one entry (within one server).
 */
export async function uploadBlob(
  deps: { blobs: BlobStore; store: Store },
  upload: { source: AsyncIterable<Uint8Array>; sha256: string; maxBytes: number; principal: Principal },
): Promise<BlobInfo & { created: boolean }> {
  return deps.blobs.put(upload.source, upload.sha256, upload.maxBytes, async (stored) => {
    if (!stored.created && (await deps.store.audit.has('blob.upload', stored.sha256))) return;
    await deps.store.audit.append({
      at: new Date().toISOString(),
      actor: actorOf(upload.principal),
      action: 'blob.upload',
      target: stored.sha256,
      details: { bytes: stored.bytes },
    });
  });
}
