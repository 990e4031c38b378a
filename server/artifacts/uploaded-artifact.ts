import { verifyManifestSignature } from '../../shared/artifact/signature.ts';
import { ManifestSchema, ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';
import type { BlobStore } from './blob-store.ts';
import { readStoredBlob, storedModelProblem } from './model-file-check.ts';
import { TFJS_MODEL_JSON_PATH, tfjsArchitectureProblem } from '../../shared/artifact/architecture-check.ts';
import type { TrustedKeys } from './trusted-keys.ts';

/**
 * Checks a manifest submitted for registration: it parses, it is signed by a trusted key, and
 * every file it lists is a stored blob of the listed size (blob addresses are their sha256, so
 * the content matches by construction). Any failure is a 400 naming the first problem. The listed
 * blobs are claimed, which keeps garbage collection off them while the registration commits.
 */
export async function checkUploadedArtifact(input: unknown, blobs: BlobStore, trusted: TrustedKeys): Promise<Manifest> {
  const manifest = checkSignedManifest(input, trusted);
  for (const [path, file] of Object.entries(manifest.files)) {
    const stored = await blobs.claim(file.sha256);
    if (!stored) throw new ServiceError('bad_request', `manifest.files.${path}: blob ${file.sha256} was not uploaded: upload it first (PUT /api/blobs/${file.sha256}, or Blobs.UploadBlob over gRPC; models push does both)`);
    if (stored.bytes !== file.bytes) {
      throw new ServiceError(
        'bad_request',
        `manifest.files.${path}: listed as ${file.bytes} bytes, the stored blob has ${stored.bytes} (the manifest lists the wrong size, or the server's copy is damaged: uploading the file again, as models push does, replaces a damaged copy)`,
      );
    }
  }
  return manifest;
}

/**
 * Refuses a stored model.onnx every device would refuse at install, or one that is not the model
 * its manifest's architecture describes (storedModelProblem), and a tfjs model of another network. Run after
 * the registry's own checks (RegistryService.checkRegistrable): a manifest it refuses (too large,
 * another task, a taken version) is refused for that first, and the model is not loaded for it.
 */
export async function checkStoredModel(manifest: Manifest, blobs: BlobStore): Promise<void> {
  const problem = await storedModelProblem(blobs, manifest);
  if (problem?.refusedByDevices) throw new ServiceError('bad_request', `manifest.files.${ONNX_FILE}: ${problem.message}: every device would refuse it`);
  if (problem) throw new ServiceError('bad_request', `manifest.architecture: ${problem.message}`);
  const tfjsProblem = await storedTfjsProblem(manifest, blobs);
  if (tfjsProblem) throw new ServiceError('bad_request', `manifest.architecture: ${tfjsProblem}`);
}

/** The largest tfjs model.json read: a real one is a few KiB (its topology and weight names). */
const MAX_TFJS_MODEL_JSON_BYTES = 4 * 1024 * 1024;

/** Whether the stored tfjs model.json lists the network the manifest's architecture describes (tfjsArchitectureProblem); null when it does or none is listed. */
async function storedTfjsProblem(manifest: Manifest, blobs: BlobStore): Promise<string | null> {
  const file = manifest.files[TFJS_MODEL_JSON_PATH];
  if (!file) return null;
  if (file.bytes > MAX_TFJS_MODEL_JSON_BYTES) return `${TFJS_MODEL_JSON_PATH} is ${file.bytes} bytes, more than the ${MAX_TFJS_MODEL_JSON_BYTES} a tfjs model.json of a dense network takes`;
  const bytes = await readStoredBlob(blobs, file.sha256);
  if (!bytes) return null; // not stored: the registration is refused for that already
  return tfjsArchitectureProblem(bytes.toString('utf8'), manifest);
}

/** A submitted manifest that parses and carries a valid signature by a key this server trusts; else a 400 naming the problem. */
export function checkSignedManifest(input: unknown, trusted: TrustedKeys): Manifest {
  const parsed = ManifestSchema.safeParse(input);
  if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, 'manifest'));
  const manifest = parsed.data;
  if (!manifest.signature) throw new ServiceError('bad_request', 'manifest.signature: missing (the artifact is unsigned)');
  const key = trusted.get(manifest.signature.keyId);
  if (!key) throw new ServiceError('bad_request', `manifest.signature: key ${manifest.signature.keyId} is not trusted by this server`);
  const failure = verifyManifestSignature(manifest, key);
  if (failure) throw new ServiceError('bad_request', `manifest.${failure} (the manifest was changed after signing, or the signature value is damaged)`);
  return manifest;
}
