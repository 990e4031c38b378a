import './ort-telemetry-off.ts';
import * as ort from 'onnxruntime-node';
import { ONNX_INPUT, ONNX_OUTPUT } from '../shared/artifact/onnx-io.ts';
import type { OnnxSession } from './onnx-session.ts';

/** Output types whose values are read as the numbers they hold. */
export const READABLE_OUTPUTS: ReadonlySet<string> = new Set(['float32', 'float64']);

/**
 * What a run must give per row, from the model's manifest (outputWidth in model-interface.ts), and
 * how an error names the model. A model's declared output shape can agree with its manifest while
 * its real output does not (a width computed from the input, which shape inference cannot see):
 * onnxruntime only logs a warning, so every run's real width is checked against this.
 */
export interface ExpectedOutput {
  /** Values per row: the number of labels for a classifier, 1 for a regressor. */
  readonly width: number;
  /** The model's version, for the error. */
  readonly version?: string;
  /** Its role (active, candidate), for the error. */
  readonly role?: string;
}

/** A run whose output is not what the manifest says the model gives: the model is wrong, not the input. */
export class ModelOutputError extends Error {
  constructor(
    message: string,
    /** The dims the run gave. */
    readonly dims: readonly number[],
    readonly expectedWidth: number,
  ) {
    super(message);
    this.name = 'ModelOutputError';
  }
}

/**
 * Runs a fleetprune ONNX model (input `features` float32 [batch, nFeatures] of raw features,
 * output `output` [batch, nOutputs]) on row-major features; returns one output row per input row.
 * With `expected`, an output of any other width than `expected.width` throws a ModelOutputError
 * (every agent run passes it; a bare run reads whatever width comes back).
 */
export async function runModel(session: OnnxSession, features: Float32Array, rows: number, nFeatures: number, expected?: ExpectedOutput): Promise<number[][]> {
  const tensor = new ort.Tensor('float32', features, [rows, nFeatures]);
  const result = await session.run({ [ONNX_INPUT]: tensor });
  const output = result[ONNX_OUTPUT];
  if (!output) throw new Error(`${modelName(expected)} has no output named ${ONNX_OUTPUT}`);
  const [outputRows, width] = output.dims;
  // Anything else would be read as numbers it does not hold (other types' bits, rows of another length).
  if (!READABLE_OUTPUTS.has(output.type) || output.dims.length !== 2 || outputRows !== rows || width === undefined) {
    tensor.dispose();
    output.dispose();
    throw new ModelOutputError(`${modelName(expected)} gave "${ONNX_OUTPUT}" as ${output.type} [${output.dims.join(', ')}] for ${rows} rows, not float32 or float64 [${rows}, ${expected?.width ?? 'k'}]`, output.dims, expected?.width ?? -1);
  }
  if (expected && width !== expected.width) {
    const dims = output.dims;
    tensor.dispose();
    output.dispose();
    throw new ModelOutputError(
      `${modelName(expected)} gave "${ONNX_OUTPUT}" [${dims.join(', ')}] for ${rows} rows: ${width} values per row, but its manifest says ${expected.width} ([${rows}, ${expected.width}])`,
      dims,
      expected.width,
    );
  }
  const data = output.data as Float32Array | Float64Array;
  const out: number[][] = [];
  for (let r = 0; r < rows; r++) out.push(Array.from(data.subarray(r * width, (r + 1) * width)));
  tensor.dispose();
  output.dispose();
  return out;
}

/** "the model", "the candidate model 1.2". */
function modelName(expected: ExpectedOutput | undefined): string {
  return ['the', expected?.role, 'model', expected?.version].filter((word) => word !== undefined && word !== '').join(' ');
}

/** Row-major float32 features of `rows` (each already in the model's feature order). */
export function packRows(rows: readonly (readonly number[])[], nFeatures: number): Float32Array {
  const packed = new Float32Array(rows.length * nFeatures);
  rows.forEach((row, r) => packed.set(row, r * nFeatures));
  return packed;
}
