import './ort-telemetry-off.ts';
import * as ort from 'onnxruntime-node';
import { ONNX_INPUT, ONNX_OUTPUT } from '../shared/artifact/onnx-io.ts';
import { READABLE_OUTPUTS } from './model-interface.ts';
import type { OnnxSession } from './onnx-session.ts';

/**
 * Runs a fleetprune ONNX model (input `features` float32 [batch, nFeatures] of raw features,
 * output `output` [batch, nOutputs]) on row-major features; returns one output row per input row.
 */
export async function runModel(session: OnnxSession, features: Float32Array, rows: number, nFeatures: number): Promise<number[][]> {
  const tensor = new ort.Tensor('float32', features, [rows, nFeatures]);
  const result = await session.run({ [ONNX_INPUT]: tensor });
  const output = result[ONNX_OUTPUT];
  if (!output) throw new Error(`the model has no output named ${ONNX_OUTPUT}`);
  const [outputRows, width] = output.dims;
  // Anything else would be read as numbers it does not hold (other types' bits, rows of another length).
  if (!READABLE_OUTPUTS.has(output.type) || output.dims.length !== 2 || outputRows !== rows || width === undefined) {
    tensor.dispose();
    output.dispose();
    throw new Error(`the model gave "${ONNX_OUTPUT}" as ${output.type} [${output.dims.join(', ')}] for ${rows} rows, not float32 or float64 [${rows}, k]`);
  }
  const data = output.data as Float32Array | Float64Array;
  const out: number[][] = [];
  for (let r = 0; r < rows; r++) out.push(Array.from(data.subarray(r * width, (r + 1) * width)));
  tensor.dispose();
  output.dispose();
  return out;
}

/** Row-major float32 features of `rows` (each already in the model's feature order). */
export function packRows(rows: readonly (readonly number[])[], nFeatures: number): Float32Array {
  const packed = new Float32Array(rows.length * nFeatures);
  rows.forEach((row, r) => packed.set(row, r * nFeatures));
  return packed;
}
