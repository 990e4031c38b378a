import { ServiceError } from '../app/service-error.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { BlobStore } from './blob-store.ts';
import { checkSignedManifest } from './uploaded-artifact.ts';
import type { TrustedKeys } from './trusted-keys.ts';

export interface PushCheck {
  /** sha256 of each file the manifest lists that the server does not store yet: what to upload. */
  missingBlobs: string[];
}

/**
 * The check before a push uploads anything: the manifest parses, is signed by a trusted key and
 * could be registered as a version of `model` (see RegistryService.checkRegistrable), and each file
 * to upload is within --max-blob-bytes. A refused push then leaves no uploaded file behind, and
 * files the server already has are not sent again.
 * Changes nothing but the age of the stored files it finds (see BlobStore.claim).
 */
export async function checkPush(
  model: string,
  input: unknown,
  deps: { registry: RegistryService; blobs: BlobStore; trustedKeys: TrustedKeys; config: { maxBlobBytes: number } },
): Promise<PushCheck> {
  const manifest = checkSignedManifest(input, deps.trustedKeys);
  await deps.registry.checkRegistrable(model, manifest);
  const missing = new Set<string>();
  for (const [path, file] of Object.entries(manifest.files)) {
    // Claimed: a stored file the push will reuse is kept from garbage collection until it registers.
    if (await deps.blobs.claim(file.sha256)) continue;
    // A file its upload would be refused for: refused now, before any other file is sent.
    if (file.bytes > deps.config.maxBlobBytes) {
      throw new ServiceError('payload_too_large', `manifest.files.${path}: ${file.bytes} bytes exceed the upload limit of ${deps.config.maxBlobBytes} bytes (--max-blob-bytes)`);
    }
    missing.add(file.sha256);
  }
  return { missingBlobs: [...missing] };
}
