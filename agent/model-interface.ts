import type { Manifest } from '../shared/artifact/manifest.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from '../shared/artifact/onnx-io.ts';
import type { OnnxSession } from './onnx-session.ts';

/**
 * Why a loaded model cannot run as its manifest describes it, or null when it can: the agent
 * feeds `features` float32 [rows, manifest.features.length] and reads `output` [rows, k], where
 * k is the number of labels for a classifier and 1 for a regressor. A signed artifact can still
 * hold a model.onnx that disagrees with its manifest; such a model is refused before it is
 * installed or activated, instead of failing every prediction.
 */
export function modelInterfaceProblem(session: OnnxSession, manifest: Manifest): string | null {
  const input = session.inputMetadata.find((value) => value.name === ONNX_INPUT);
  if (!input) return `model.onnx has no input "${ONNX_INPUT}" (inputs: ${session.inputNames.join(', ') || 'none'})`;
  if (!input.isTensor || input.type !== 'float32') return `model.onnx input "${ONNX_INPUT}" is not a float32 tensor`;
  const width = input.shape.at(-1);
  if (input.shape.length !== 2 || width !== manifest.features.length) {
    return `model.onnx takes "${ONNX_INPUT}" of shape [${input.shape.join(', ')}], but the manifest lists ${manifest.features.length} features`;
  }
  const output = session.outputMetadata.find((value) => value.name === ONNX_OUTPUT);
  if (!output) return `model.onnx has no output "${ONNX_OUTPUT}" (outputs: ${session.outputNames.join(', ') || 'none'})`;
  const outputs = manifest.task === 'classification' ? manifest.labels.length : 1;
  const outputWidth = output.isTensor ? output.shape.at(-1) : undefined;
  if (typeof outputWidth === 'number' && outputWidth !== outputs) {
    return `model.onnx gives "${ONNX_OUTPUT}" ${outputWidth} values per row, but the manifest's ${manifest.task} task needs ${outputs}`;
  }
  return null;
}
