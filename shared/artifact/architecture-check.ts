import type { Manifest } from './manifest.ts';
import { ONNX_FILE, TFJS_DIR, TFJS_MODEL_JSON } from './manifest.ts';
import { onnxArchitecture, onnxValueCount } from './onnx-architecture.ts';

/**
 * Whether an artifact's model files hold the network its manifest's `architecture` describes. A
 * signed manifest can list any files: `fleetprune verify` and the registry both check, so that
 * verify (the check before shipping) says no to what the registry refuses.
 */

/** The layers of an architecture as messages show them: `27-22-16-3 on 4 inputs (1234 parameters, 2400 FLOPs/sample)`. */
const shown = (a: { inputs: number; layers: readonly number[]; params: number; flopsPerSample: number }) =>
  `${a.layers.join('-')} on ${a.inputs} inputs (${a.params} parameters, ${a.flopsPerSample} FLOPs/sample)`;

/**
 * Values a model.onnx not laid out as exportOnnx writes it may hold beyond its manifest's
 * parameters: their standardization (a mean and a scale per input, and the target's for
 * regression) and a few constants another exporter's graph may keep (shapes, axes).
 */
const OTHER_EXPORTER_SLACK = 64;

/**
 * The manifest's `architecture` against the layers model.onnx (`bytes`) holds: those exportOnnx
 * writes, and every value beyond them (weights a manifest does not count: the registry would show
 * a smaller model than devices run). A model in another layout is held to the values its manifest
 * counts. Null when they agree, else one line.
 */
export function onnxArchitectureProblem(bytes: Uint8Array, manifest: Manifest): string | null {
  const claimed = manifest.architecture;
  const actual = onnxArchitecture(bytes);
  if (!actual) {
    const values = onnxValueCount(bytes);
    const allowed = claimed.params + 2 * claimed.inputs + 2 + OTHER_EXPORTER_SLACK;
    if (values === undefined || values <= allowed) return null;
    return `${ONNX_FILE} holds ${values} values, more than the layers ${shown(claimed)} its manifest's architecture lists and their standardization: the registry would show a smaller model than devices run`;
  }
  if (actual.unlistedValues > 0) {
    return `${ONNX_FILE} holds ${actual.unlistedValues} values beyond the layers ${shown(actual)} and their standardization (a model exportOnnx did not write): the registry would show a smaller model than devices run`;
  }
  if (shown(actual) === shown(claimed)) return null;
  return `${ONNX_FILE} holds the layers ${shown(actual)}, but the manifest's architecture says ${shown(claimed)}: the registry would show another model's size`;
}

/** Where an artifact keeps its tfjs model.json. */
export const TFJS_MODEL_JSON_PATH = `${TFJS_DIR}/${TFJS_MODEL_JSON}`;

/**
 * The manifest's `architecture` against the dense layers the tfjs model.json (`text`) lists in its
 * weights manifest (each layer's kernel, inputs × units, in order): the tfjs model is what a
 * retraining or a later prune starts from, and `loadTfjsNetwork` would read another network back
 * for the version. Null when they agree, else one line.
 */
export function tfjsArchitectureProblem(text: string, manifest: Manifest): string | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return `${TFJS_MODEL_JSON_PATH}: not valid JSON (${(error as Error).message})`;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return `${TFJS_MODEL_JSON_PATH}: not a tfjs model.json (its JSON is not an object)`;
  const groups = (json as { weightsManifest?: unknown }).weightsManifest;
  if (!Array.isArray(groups)) return `${TFJS_MODEL_JSON_PATH}: no weightsManifest list`;
  const shapes: number[][] = [];
  for (const group of groups) {
    const weights = (group as { weights?: unknown } | null)?.weights;
    if (!Array.isArray(weights)) return `${TFJS_MODEL_JSON_PATH}: a weightsManifest entry without a weights list`;
    for (const weight of weights) {
      const shape = (weight as { shape?: unknown } | null)?.shape;
      if (!Array.isArray(shape) || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) return `${TFJS_MODEL_JSON_PATH}: a weight without a shape of whole numbers`;
      shapes.push(shape as number[]);
    }
  }
  const kernels = shapes.filter((shape) => shape.length === 2);
  const actual = kernels.length > 0 && kernels.every((kernel, i) => i === 0 || kernel[0] === kernels[i - 1]![1]) ? { inputs: kernels[0]![0]!, layers: kernels.map((kernel) => kernel[1]!) } : null;
  const claimed = manifest.architecture;
  const values = shapes.reduce((sum, shape) => sum + shape.reduce((product, dim) => product * dim, 1), 0);
  const layersOf = (a: { inputs: number; layers: readonly number[] }) => `${a.layers.join('-')} on ${a.inputs} inputs`;
  if (actual && layersOf(actual) === layersOf(claimed) && values === claimed.params) return null;
  const holds = actual ? `the layers ${layersOf(actual)} (${values} values)` : `${kernels.length} kernels that do not chain into dense layers (${values} values)`;
  return `${TFJS_MODEL_JSON_PATH} holds ${holds}, but the manifest's architecture says ${shown(claimed)}: the tfjs model is another network than the version's`;
}
