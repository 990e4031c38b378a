import { ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import { onnxArchitectureProblem } from '../../shared/artifact/architecture-check.ts';
import type { BlobStore } from './blob-store.ts';
import { ModelCheckRunner, ModelCheckTimeout } from './model-check-runner.ts';

/**
 * How long a model's check may take (loading it, one row, two batches of 64): a dense network of
 * the sizes pruning makes takes milliseconds. One that runs longer (a signed model that loops, or
 * whose work grows with its rows) would hang every device's benchmark and inference, which have no
 * limit: refused.
 */
export const MODEL_CHECK_TIMEOUT_MS = 10_000;

/** The server's model checks (model-check-runner.ts), made when first needed. */
let checks: ModelCheckRunner | undefined;

/** Ends a model check under way (the server stopping): it is refused as the server shutting down. */
export function stopModelChecks(): void {
  checks?.stop();
}

/**
 * Why devices would refuse the stored `model.onnx` of `manifest` at install, or null: it does not
 * load in onnxruntime (not ONNX at all, an empty file), or it does not take and give what the
 * manifest says (modelInterfaceProblem), or, run on one row and on batches, gives another shape
 * or, a classifier, no probabilities, or does not finish within MODEL_CHECK_TIMEOUT_MS
 * (model-check-process.ts, in a child process of its own). A signed manifest can list any bytes: without this, such a version is
 * registered, can be made production, and fails on every device. Then that a model.onnx devices
 * would run holds the layers the manifest's `architecture` lists (architectureProblem).
 */
export async function storedModelProblem(blobs: BlobStore, manifest: Manifest): Promise<StoredModelProblem | null> {
  const file = manifest.files[ONNX_FILE];
  if (!file) return null;
  const bytes = await readStoredBlob(blobs, file.sha256);
  if (!bytes) return null; // not stored: the registration is refused for that already
  if (bytes.length === 0) return refused(`${ONNX_FILE} is empty`);
  let problem: string | null;
  try {
    problem = await (checks ??= new ModelCheckRunner({ timeoutMs: MODEL_CHECK_TIMEOUT_MS, idleMs: 15_000 })).check({ bytes, manifest });
  } catch (error) {
    if (error instanceof ModelCheckTimeout) return refused(`${ONNX_FILE} did not finish loading and running on one row and on 64 rows within ${error.message}: a device's benchmark and inference would not finish either`);
    throw error;
  }
  if (problem) return refused(problem);
  return architectureProblem(bytes, manifest);
}

/**
 * A stored model.onnx devices would refuse (`refusedByDevices`), or one they would run but that is
 * not the model its manifest describes: the registry, the dashboard and `models show` would give
 * another model's layers, parameters and FLOPs.
 */
export interface StoredModelProblem {
  message: string;
  refusedByDevices: boolean;
}

const refused = (message: string): StoredModelProblem => ({ message, refusedByDevices: true });

/** The manifest's architecture against the layers model.onnx holds (onnxArchitectureProblem): devices would run it. */
function architectureProblem(bytes: Uint8Array, manifest: Manifest): StoredModelProblem | null {
  const message = onnxArchitectureProblem(bytes, manifest);
  return message === null ? null : { message, refusedByDevices: false };
}

/** A stored blob's bytes, whole (a model's files: small), or null when it is not stored. */
export async function readStoredBlob(blobs: BlobStore, sha256: string): Promise<Buffer | null> {
  const blob = await blobs.openForRead(sha256);
  if (!blob) return null;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of blob.stream() as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks);
  } finally {
    await blob.close();
  }
}
