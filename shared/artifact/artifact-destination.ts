import { readdir, stat } from 'node:fs/promises';
import { UserError } from '../util/errors.ts';
import { MANIFEST_FILE } from './manifest.ts';

// Apart from writeArtifact (which loads TensorFlow.js), so that a CLI can check its --out early and cheaply.

/**
 * Checks up front, before long work, that writeArtifact may write to `dir`: it is missing, an
 * empty directory, or an existing artifact. Anything else is a UserError naming it.
 */
export async function assertArtifactDestination(dir: string): Promise<void> {
  await holdsArtifact(dir);
}

/** False for a missing or empty directory, true for an artifact; a UserError for anything else. */
export async function holdsArtifact(dir: string): Promise<boolean> {
  const info = await stat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!info) return false;
  if (!info.isDirectory()) throw new UserError(`cannot write artifact to ${dir}: it exists and is not a directory`);
  const entries = await readdir(dir);
  if (entries.length === 0) return false;
  if (entries.includes(MANIFEST_FILE)) return true;
  throw new UserError(`cannot write artifact to ${dir}: it is a non-empty directory without ${MANIFEST_FILE}; refusing to replace it`);
}
