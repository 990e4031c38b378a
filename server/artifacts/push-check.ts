import type { Manifest } from '../../shared/artifact/manifest.ts';
import { ServiceError } from '../app/service-error.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { BlobStore } from './blob-store.ts';
import { checkSignedManifest } from './uploaded-artifact.ts';
import type { TrustedKeys } from './trusted-keys.ts';

export interface PushCheck {
  /** sha256 of each file the manifest lists that the server does not store yet: what to upload. */
  missingBlobs: string[];
  /**
   * `model@version` when the artifact is registered already and the server has lost some of its
   * files (a copy found damaged, or removed by hand): uploading them restores the version, and
   * there is nothing to register. An artifact registered with all its files is refused (409).
   */
  registeredAs?: string;
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
  const registered = await deps.registry.findRegistered(model, manifest);
  if (registered) {
    const missingBlobs = await missingFiles(manifest, deps);
    if (missingBlobs.length === 0) throw new ServiceError('already_exists', `artifact ${registered.artifactId} is already registered as ${model}@${registered.version}`);
    return { missingBlobs, registeredAs: `${model}@${registered.version}` };
  }
  await deps.registry.checkRegistrable(model, manifest);
  return { missingBlobs: await missingFiles(manifest, deps) };
}

/** sha256 of each file of `manifest` the server does not store (or stores damaged); within --max-blob-bytes, else refused. */
async function missingFiles(manifest: Manifest, deps: { blobs: BlobStore; config: { maxBlobBytes: number } }): Promise<string[]> {
  const missing = new Set<string>();
  for (const [path, file] of Object.entries(manifest.files)) {
    // Claimed: a stored file the push will reuse is kept from garbage collection until it registers.
    // One of another size than listed is damaged on disk (cut short): uploading it again replaces it.
    if ((await deps.blobs.claim(file.sha256))?.bytes === file.bytes) continue;
    // A file its upload would be refused for: refused now, before any other file is sent.
    if (file.bytes > deps.config.maxBlobBytes) {
      throw new ServiceError('payload_too_large', `manifest.files.${path}: ${file.bytes} bytes exceed the upload limit of ${deps.config.maxBlobBytes} bytes (--max-blob-bytes)`);
    }
    missing.add(file.sha256);
  }
  return [...missing];
}
