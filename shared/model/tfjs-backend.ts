import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../util/errors.ts';

export type TfjsBackendName = 'tensorflow' | 'wasm' | 'cpu';

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
    throw new UserError('FLEETPRUNE_TF_BACKEND=tensorflow: @tensorflow/tfjs-node is not installed or does not load here (npm install @tensorflow/tfjs-node)');
  }
  if (forced !== 'cpu') {
    await import('@tensorflow/tfjs-backend-wasm');
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}

const BACKENDS: readonly TfjsBackendName[] = ['tensorflow', 'wasm', 'cpu'];

function forcedBackend(): TfjsBackendName | undefined {
  const value = process.env.FLEETPRUNE_TF_BACKEND;
  if (value === undefined || value === '') return undefined;
  if (!BACKENDS.includes(value as TfjsBackendName)) {
    throw new UserError(`FLEETPRUNE_TF_BACKEND: must be one of ${BACKENDS.join(', ')}, not "${value}"`);
  }
  return value as TfjsBackendName;
}

async function tryNative(): Promise<boolean> {
  try {
    // Optional dependency: present only where its install step could download libtensorflow.
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
  } catch {
    return false;
  }
  try {
    await import('@tensorflow/tfjs-node' as string);
    return true;
  } catch {
    return false;
  }
}

export { tf };
