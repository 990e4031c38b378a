import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DenseNetwork } from '../model/dense-network.ts';
import { initTfjs, tf } from '../model/tfjs-backend.ts';
import { toDenseNetwork, type Scaling } from '../model/tfjs-convert.ts';
import { UserError, describeZodError, errorMessage } from '../util/errors.ts';
import { isSafeRelativePath, TFJS_DIR, TFJS_MODEL_JSON, TFJS_SCALING_JSON, TFJS_WEIGHTS_BIN } from './manifest.ts';

/**
 * A tfjs Layers model as the standard `file://` files (model.json + weights.bin), in memory,
 * keyed by file name. Captured with a save handler, since there is no tfjs-node to save to disk.
 */
export async function encodeTfjsModel(model: tf.LayersModel): Promise<Map<string, Uint8Array>> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  const { modelTopology, weightSpecs = [], weightData = [], format, generatedBy } = captured!;
  const modelJson: tf.io.ModelJSON = {
    modelTopology: modelTopology!,
    weightsManifest: [{ paths: [TFJS_WEIGHTS_BIN], weights: weightSpecs }],
    format: format ?? 'layers-model',
    generatedBy,
    convertedBy: null,
  };
  return new Map([
    [TFJS_MODEL_JSON, new TextEncoder().encode(`${JSON.stringify(modelJson)}\n`)],
    [TFJS_WEIGHTS_BIN, new Uint8Array(tf.io.CompositeArrayBuffer.join(weightData))],
  ]);
}

/** Loads the tfjs Layers model whose model.json (and the weight files it names) are in `dir`. */
export async function loadTfjsModel(dir: string): Promise<tf.LayersModel> {
  await initTfjs();
  const modelJson = parseModelJson(dir, await readTfjsFile(dir, TFJS_MODEL_JSON));
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (weightsManifest) => {
    const specs = weightsManifest.flatMap((group) => group.weights);
    const paths = weightsManifest.flatMap((group) => group.paths);
    // Copies into standalone ArrayBuffers: a Buffer may be a view into a shared pool.
    const buffers = await Promise.all(paths.map(async (path) => new Uint8Array(await readTfjsFile(dir, path)).buffer));
    return [specs, buffers];
  });
  return tf.loadLayersModel(tf.io.fromMemory(artifacts));
}

function parseModelJson(dir: string, bytes: Uint8Array): tf.io.ModelJSON {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as tf.io.ModelJSON;
  } catch (error) {
    throw new UserError(`${join(dir, TFJS_MODEL_JSON)}: not valid JSON (${errorMessage(error)})`, { cause: error });
  }
}

async function readTfjsFile(dir: string, path: string): Promise<Uint8Array> {
  if (!isSafeRelativePath(path)) throw new UserError(`${join(dir, TFJS_MODEL_JSON)}: unsafe weights path ${JSON.stringify(path)}`);
  try {
    return await readFile(join(dir, path));
  } catch (error) {
    throw new UserError(`cannot read tfjs model file ${join(dir, path)}: ${errorMessage(error)}`, { cause: error });
  }
}

const ScalingFileSchema = z.strictObject({
  inputMean: z.array(z.number()).min(1),
  inputScale: z.array(z.number().positive()).min(1),
  target: z.strictObject({ mean: z.number(), scale: z.number().positive() }).nullable(),
});

/** scaling.json: the standardization the tfjs model expects around it (see TFJS_SCALING_JSON). */
export function encodeScaling(scaling: Scaling): Uint8Array {
  const file: z.infer<typeof ScalingFileSchema> = {
    inputMean: Array.from(scaling.inputMean),
    inputScale: Array.from(scaling.inputScale),
    target: scaling.target ?? null,
  };
  return new TextEncoder().encode(`${JSON.stringify(file)}\n`);
}

/**
 * The artifact's tfjs model with its standardization, as a DenseNetwork that takes raw features
 * (`forward`), like model.onnx. `dir` is the artifact's tfjs directory.
 */
export async function loadTfjsNetwork(dir: string): Promise<DenseNetwork> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(join(dir, TFJS_SCALING_JSON));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new UserError(`cannot read ${join(dir, TFJS_SCALING_JSON)}: ${errorMessage(error)}`, { cause: error });
    // The artifact directory given for its tfjs/ one: said so, not read as an artifact too old to have scaling.json.
    if (await stat(join(dir, TFJS_DIR, TFJS_MODEL_JSON)).then((info) => info.isFile(), () => false)) {
      throw new UserError(`${dir}: an artifact directory; loadTfjsNetwork reads its tfjs model's directory, ${join(dir, TFJS_DIR)}`, { cause: error });
    }
    throw new UserError(
      `${dir}: no ${TFJS_SCALING_JSON}: the artifact was written before it existed, and its tfjs model takes standardized inputs; model.onnx takes raw features`,
      { cause: error },
    );
  }
  const text = new TextDecoder().decode(bytes);
  let parsed: z.infer<typeof ScalingFileSchema>;
  try {
    parsed = ScalingFileSchema.parse(JSON.parse(text));
  } catch (error) {
    const reason = error instanceof z.ZodError ? describeZodError(error) : errorMessage(error);
    throw new UserError(`${join(dir, TFJS_SCALING_JSON)}: ${reason}`, { cause: error });
  }
  const model = await loadTfjsModel(dir);
  try {
    if (parsed.inputMean.length !== parsed.inputScale.length || model.inputs[0]?.shape[1] !== parsed.inputMean.length) {
      throw new UserError(`${join(dir, TFJS_SCALING_JSON)}: scales ${parsed.inputMean.length} inputs, but the model takes ${model.inputs[0]?.shape[1]}`);
    }
    const network = toDenseNetwork(model, {
      inputMean: Float32Array.from(parsed.inputMean),
      inputScale: Float32Array.from(parsed.inputScale),
      ...(parsed.target ? { target: parsed.target } : {}),
    });
    // A classifier (softmax) outputs probabilities as they are; a regressor's output is scaled back.
    const classifier = network.layers.at(-1)?.activation === 'softmax';
    if (classifier === (parsed.target !== null)) {
      throw new UserError(`${join(dir, TFJS_SCALING_JSON)}: ${classifier ? 'a classifier has no target scaling' : 'a regressor needs its target scaling'}`);
    }
    return network;
  } finally {
    model.dispose();
  }
}
