import { ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import { onnxArchitecture } from '../../shared/artifact/onnx-architecture.ts';
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
 * registered, can be made production, and fails on every device. Then that a model.onnx devices
 * would run holds the layers the manifest's `architecture` lists (architectureProblem).
 */
export async function storedModelProblem(blobs: BlobStore, manifest: Manifest): Promise<StoredModelProblem | null> {
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
  if (bytes.length === 0) return refused(`${ONNX_FILE} is empty`);
  let session;
  try {
    session = await createOnnxSession(bytes);
  } catch (error) {
    return refused(`${ONNX_FILE} does not load in onnxruntime (${errorMessage(error)})`);
  }
  try {
    const problem = modelInterfaceProblem(session, manifest) ?? (await modelProbeProblem(session, manifest));
    if (problem) return refused(problem);
  } finally {
    await session.release();
  }
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

/** The manifest's `architecture` against the layers model.onnx holds (when it holds them as exportOnnx writes them). */
function architectureProblem(bytes: Uint8Array, manifest: Manifest): StoredModelProblem | null {
  const actual = onnxArchitecture(bytes);
  if (!actual) return null;
  const claimed = manifest.architecture;
  const shown = (a: { inputs: number; layers: readonly number[]; params: number; flopsPerSample: number }) => `${a.layers.join('-')} on ${a.inputs} inputs (${a.params} parameters, ${a.flopsPerSample} FLOPs/sample)`;
  if (shown(actual) === shown(claimed)) return null;
  return {
    message: `${ONNX_FILE} holds the layers ${shown(actual)}, but the manifest's architecture says ${shown(claimed)}: the registry would show another model's size`,
    refusedByDevices: false,
  };
}
