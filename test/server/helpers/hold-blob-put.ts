import type { BlobStore } from '../../../server/artifacts/blob-store.ts';

/**
 * Holds the server's real blob store for `ms` on the first file a job stores (as a large
 * artifact's copy would be), so a cancel or a shutdown lands while its models are being stored,
 * every time. Resolves when that first put has started. Only the first: each put held would add
 * `ms` per file of both models.
 */
export function holdFirstBlobPut(blobs: BlobStore, ms = 1000): Promise<void> {
  const put = blobs.put.bind(blobs);
  let storing!: () => void;
  const inStorage = new Promise<void>((resolve) => (storing = resolve));
  let held = false;
  blobs.put = async (...args) => {
    if (!held) {
      held = true;
      storing();
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
    return put(...args);
  };
  return inStorage;
}
