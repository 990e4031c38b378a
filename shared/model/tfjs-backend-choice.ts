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
