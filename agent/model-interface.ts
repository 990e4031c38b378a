import type { Manifest } from '../shared/artifact/manifest.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from '../shared/artifact/onnx-io.ts';
import type { OnnxSession } from './onnx-session.ts';

/** Output types whose values are read as the numbers they hold. */
export const READABLE_OUTPUTS: ReadonlySet<string> = new Set(['float32', 'float64']);

/**
 * Why a loaded model cannot run as its manifest describes it, or null when it can: the agent
 * feeds `features` float32 [rows, manifest.features.length] (any number of rows, and no other
 * input) and reads `output` float32 (or float64) [rows, k], where k is the number of labels for
 * a classifier and 1 for a regressor. A signed artifact can still hold a model.onnx that disagrees with its
 * manifest; such a model is refused before it is installed or activated, instead of failing
 * every prediction (or answering with numbers read from another type, as float16 or int64 bits).
 */
export function modelInterfaceProblem(session: OnnxSession, manifest: Manifest): string | null {
  const input = session.inputMetadata.find((value) => value.name === ONNX_INPUT);
  if (!input) return `model.onnx has no input "${ONNX_INPUT}" (inputs: ${session.inputNames.join(', ') || 'none'})`;
  const others = session.inputNames.filter((name) => name !== ONNX_INPUT);
  if (others.length > 0) return `model.onnx takes inputs other than "${ONNX_INPUT}" (${others.join(', ')}), which the agent cannot feed`;
  if (!input.isTensor || input.type !== 'float32') return `model.onnx input "${ONNX_INPUT}" is not a float32 tensor`;
  const width = input.shape.at(-1);
  if (input.shape.length !== 2 || width !== manifest.features.length) {
    return `model.onnx takes "${ONNX_INPUT}" of shape [${input.shape.join(', ')}], but the manifest lists ${manifest.features.length} features`;
  }
  if (typeof input.shape[0] === 'number') return `model.onnx takes "${ONNX_INPUT}" in batches of exactly ${input.shape[0]} rows, but the agent feeds any number of rows`;
  const output = session.outputMetadata.find((value) => value.name === ONNX_OUTPUT);
  if (!output) return `model.onnx has no output "${ONNX_OUTPUT}" (outputs: ${session.outputNames.join(', ') || 'none'})`;
  if (!output.isTensor || !READABLE_OUTPUTS.has(output.type)) return `model.onnx output "${ONNX_OUTPUT}" is not a float32 or float64 tensor`;
  const outputs = manifest.task === 'classification' ? manifest.labels.length : 1;
  if (output.shape.length !== 2 || typeof output.shape[0] === 'number') {
    return `model.onnx gives "${ONNX_OUTPUT}" of shape [${output.shape.join(', ')}], but the agent reads one row of values per input row`;
  }
  const outputWidth = output.shape[1];
  if (outputWidth !== outputs) {
    return `model.onnx gives "${ONNX_OUTPUT}" ${typeof outputWidth === 'number' ? outputWidth : `"${outputWidth}" (not a fixed number of)`} values per row, but the manifest's ${manifest.task} task needs ${outputs}`;
  }
  return null;
}
