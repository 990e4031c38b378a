import { readFile } from 'node:fs/promises';
import { sha256Hex } from '../shared/artifact/digest.ts';

/** What onnxruntime is given to load: a verified model.onnx and the SHA-256 its signed manifest names. */
export interface OnnxSource {
  readonly artifactId: string;
  readonly onnxPath: string;
  readonly onnxSha256: string;
}

/**
 * model.onnx's bytes, read once and checked against the manifest's SHA-256: onnxruntime loads
 * these bytes, not the path, so a file changed after it was verified is refused rather than run.
 */
export async function readVerifiedOnnx(source: OnnxSource): Promise<Uint8Array> {
  const bytes = await readFile(source.onnxPath);
  if (sha256Hex(bytes) !== source.onnxSha256) throw new Error(`${source.onnxPath}: sha256 mismatch (changed on disk after it was verified)`);
  return bytes;
}
