import { ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import { errorMessage } from '../../shared/util/errors.ts';
// The checks an agent makes before it installs a model (precedent: the demo runs the agent's code too).
import { modelInterfaceProblem, modelProbeProblem } from '../../agent/model-interface.ts';
import { createOnnxSession } from '../../agent/onnx-session.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * Why devices would refuse the stored `model.onnx` of `manifest` at install, or null: it does not
 * load in onnxruntime (not ONNX at all, an empty file), or it does not take and give what the
 * manifest says (modelInterfaceProblem), or, run once on one row, gives another shape
 * (modelProbeProblem). A signed manifest can list any bytes: without this, such a version is
 * registered, can be made production, and fails on every device.
 */
export async function storedModelProblem(blobs: BlobStore, manifest: Manifest): Promise<string | null> {
  const file = manifest.files[ONNX_FILE];
  if (!file) return null;
  const blob = await blobs.openForRead(file.sha256);
  if (!blob) return null; // not stored: the registration is refused for that already
  let bytes: Buffer;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of blob.stream() as AsyncIterable<Buffer>) chunks.push(chunk);
    bytes = Buffer.concat(chunks);
  } finally {
    await blob.close();
  }
  if (bytes.length === 0) return `${ONNX_FILE} is empty`;
  let session;
  try {
    session = await createOnnxSession(bytes);
  } catch (error) {
    return `${ONNX_FILE} does not load in onnxruntime (${errorMessage(error)})`;
  }
  try {
    return modelInterfaceProblem(session, manifest) ?? (await modelProbeProblem(session, manifest));
  } finally {
    await session.release();
  }
}
