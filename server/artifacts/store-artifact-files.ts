import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import type { BlobStore } from './blob-store.ts';

/** Copies every file an artifact directory's manifest lists into the blob store, hash-checked. */
export async function storeArtifactFiles(dir: string, manifest: Manifest, blobs: BlobStore): Promise<void> {
  for (const [path, file] of Object.entries(manifest.files)) {
    await blobs.put(createReadStream(join(dir, path)), file.sha256, Math.max(file.bytes, 1));
  }
}
