import { createRequire } from 'node:module';
import { UserError } from '../util/errors.ts';

/** Apart from tfjs-backend.ts (which loads TensorFlow.js), so that a server checks the choice at start cheaply. */

export type TfjsBackendName = 'tensorflow' | 'wasm' | 'cpu';

const BACKENDS: readonly TfjsBackendName[] = ['tensorflow', 'wasm', 'cpu'];

/** The backend FLEETPRUNE_TF_BACKEND forces, undefined when unset or empty; a UserError naming it for any other value. */
export function forcedBackend(): TfjsBackendName | undefined {
  const value = process.env.FLEETPRUNE_TF_BACKEND;
  if (value === undefined || value === '') return undefined;
  if (!BACKENDS.includes(value as TfjsBackendName)) {
    throw new UserError(`FLEETPRUNE_TF_BACKEND: must be one of ${BACKENDS.join(', ')}, not "${value}"`);
  }
  return value as TfjsBackendName;
}

/** TensorFlow.js's native backend package, which only some machines can install (its install step downloads libtensorflow). */
export const NATIVE_BACKEND_PACKAGE = '@tensorflow/tfjs-node';
export const NATIVE_BACKEND_MISSING = `FLEETPRUNE_TF_BACKEND=tensorflow: ${NATIVE_BACKEND_PACKAGE} is not installed or does not load here (npm install ${NATIVE_BACKEND_PACKAGE})`;

/**
 * forcedBackend, and for `tensorflow` whether its package is installed at all (resolved, not
 * loaded: a server's start does not load libtensorflow for its jobs' workers): a server forced to
 * a backend it lacks would accept every pruning job and fail each one.
 */
export function checkForcedBackend(resolve: (id: string) => string = createRequire(import.meta.url).resolve): TfjsBackendName | undefined {
  const forced = forcedBackend();
  if (forced === 'tensorflow') {
    try {
      resolve(NATIVE_BACKEND_PACKAGE);
    } catch {
      throw new UserError(NATIVE_BACKEND_MISSING);
    }
  }
  return forced;
}
