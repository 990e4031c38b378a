import type { Manifest } from '../shared/artifact/manifest.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from '../shared/artifact/onnx-io.ts';
import { ModelOutputError, READABLE_OUTPUTS, runModel, type ExpectedOutput } from './onnx-runner.ts';
import type { OnnxSession } from './onnx-session.ts';
import { errorMessage } from '../shared/util/errors.ts';

export { READABLE_OUTPUTS };

/** Values per row the manifest says its model gives: one per label for a classifier, 1 for a regressor. */
export function outputWidth(manifest: Manifest): number {
  return manifest.task === 'classification' ? manifest.labels.length : 1;
}

/** What every run of the manifest's model must give (runModel checks it), naming the model as `role` `version`. */
export function expectedOutput(manifest: Manifest, version?: string, role?: string): ExpectedOutput {
  return { width: outputWidth(manifest), version: version ?? manifest.version, ...(role ? { role } : {}) };
}

/**
 * Why a loaded model cannot run as its manifest describes it, or null when it can: the agent
 * feeds `features` float32 [rows, manifest.features.length] (any number of rows, and no other
 * input) and reads `output` float32 (or float64) [rows, k], where k is the number of labels for
 * a classifier and 1 for a regressor. A signed artifact can still hold a model.onnx that disagrees with its
 * manifest; such a model is refused before it is installed or activated, instead of failing
 * every prediction (or answering with numbers read from another type, as float16 or int64 bits).
 * This reads the declared metadata only; modelProbeProblem runs the model.
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
  const outputs = outputWidth(manifest);
  if (output.shape.length !== 2 || typeof output.shape[0] === 'number') {
    return `model.onnx gives "${ONNX_OUTPUT}" of shape [${output.shape.join(', ')}], but the agent reads one row of values per input row`;
  }
  const declaredWidth = output.shape[1];
  if (declaredWidth !== outputs) {
    return `model.onnx gives "${ONNX_OUTPUT}" ${typeof declaredWidth === 'number' ? declaredWidth : `"${declaredWidth}" (not a fixed number of)`} values per row, but the manifest's ${manifest.task} task needs ${outputs}`;
  }
  return null;
}

/**
 * Why the model, run once on one row of zeros (any input of the manifest's width), does not give
 * what its manifest says, or null when it does. The declared output shape is metadata: a model
 * whose real width is computed from its input (a Slice whose ends are) passes
 * modelInterfaceProblem, and onnxruntime only warns when the real output differs. One row keeps
 * the probe cheap; only the shape is checked (a non-finite output on zeros is not a refusal: real
 * inputs are what /v1/predict judges). Call it after modelInterfaceProblem found nothing.
 */
export async function modelProbeProblem(session: OnnxSession, manifest: Manifest): Promise<string | null> {
  const nFeatures = manifest.features.length;
  try {
    await runModel(session, new Float32Array(nFeatures), 1, nFeatures, { width: outputWidth(manifest) });
    return null;
  } catch (error) {
    if (error instanceof ModelOutputError) {
      return `model.onnx gives "${ONNX_OUTPUT}" [${error.dims.join(', ')}] when run on one row, although it declares [${declaredOutputShape(session)}]; the manifest's ${manifest.task} task needs [1, ${outputWidth(manifest)}]`;
    }
    return `model.onnx fails when run on one row: ${errorMessage(error)}`;
  }
}

function declaredOutputShape(session: OnnxSession): string {
  const output = session.outputMetadata.find((value) => value.name === ONNX_OUTPUT);
  return output?.isTensor ? output.shape.join(', ') : '?';
}
