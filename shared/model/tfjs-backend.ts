import { createRequire } from 'node:module';
import type * as Tfjs from '@tensorflow/tfjs';
import { UserError } from '../util/errors.ts';
import { forcedBackend, NATIVE_BACKEND_MISSING, type TfjsBackendName } from './tfjs-backend-choice.ts';

const require = createRequire(import.meta.url);

/**
 * require(id) with node's source maps off while the package loads. Under --enable-source-maps
 * (which `npm test` uses, and which many run TypeScript projects with) node reads and parses
 * every source map that a loaded file names, at load time: tfjs's bundles name about 20 MB of
 * them, for 0.32 CPU-s per load measured here, in every process and pruning worker that loads
 * tfjs. They would only map frames inside tfjs; stack frames in this project's code stay mapped.
 */
function requireWithoutSourceMaps<T>(id: string): T {
  const enabled = process.sourceMapsEnabled;
  if (enabled) process.setSourceMapsEnabled(false);
  try {
    return require(id) as T;
  } finally {
    if (enabled) process.setSourceMapsEnabled(true);
  }
}

/**
 * TensorFlow.js, loaded with require rather than import. Its packages are CommonJS, and an ES
 * import of one first has node scan the source of it and of every package it re-exports
 * (tfjs-core, -layers, -converter, -data, -backend-cpu) for export names: measured here, 0.76 CPU-s
 * per import against 0.20 s by require. Every pruning job's worker thread and every `fleetprune
 * prune` pays that.
 */
export const tf: typeof Tfjs = requireWithoutSourceMaps('@tensorflow/tfjs');
/** The tfjs types used as `tf.X`, as with `import * as tf`. */
export declare namespace tf {
  export type LayersModel = Tfjs.LayersModel;
  export type Sequential = Tfjs.Sequential;
  export type Tensor = Tfjs.Tensor;
  export type Tensor2D = Tfjs.Tensor2D;
  export namespace io {
    export type ModelArtifacts = Tfjs.io.ModelArtifacts;
    export type ModelJSON = Tfjs.io.ModelJSON;
  }
}

export type { TfjsBackendName } from './tfjs-backend-choice.ts';

let ready: Promise<TfjsBackendName> | undefined;

/**
 * Picks the fastest tfjs backend available, once per process:
 * `@tensorflow/tfjs-node` (native libtensorflow) when it is installed, otherwise
 * `@tensorflow/tfjs-backend-wasm`, which ships its binaries in the npm package.
 * FLEETPRUNE_TF_BACKEND=wasm|cpu|tensorflow forces one.
 */
export function initTfjs(): Promise<TfjsBackendName> {
  ready ??= choose();
  return ready;
}

async function choose(): Promise<TfjsBackendName> {
  const forced = forcedBackend();
  if ((forced === undefined || forced === 'tensorflow') && (await tryNative())) {
    if (await tf.setBackend('tensorflow')) return 'tensorflow';
  }
  // Asked for by name, it is that backend or an error, not a silently slower one.
  if (forced === 'tensorflow') {
    throw new UserError(NATIVE_BACKEND_MISSING);
  }
  if (forced !== 'cpu') {
    requireWithoutSourceMaps('@tensorflow/tfjs-backend-wasm'); // registers the backend (required, as tfjs above)
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}

async function tryNative(): Promise<boolean> {
  try {
    // Optional dependency: present only where its install step could download libtensorflow.
    require.resolve('@tensorflow/tfjs-node');
  } catch {
    return false;
  }
  try {
    requireWithoutSourceMaps('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

