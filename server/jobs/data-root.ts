import { realpath } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { isInside } from '../../shared/util/path-inside.ts';

/**
 * The real path of `requested` when it names an existing entry inside `root` (a real path), else
 * null — the same null for a path outside the root whether or not anything is there. `requested`
 * is relative to the root: absolute paths and `..` segments are refused before the file system is
 * asked; symlinks are then followed, and one that leads out of the root is refused too.
 */
export async function resolveInsideRoot(root: string, requested: string): Promise<string | null> {
  if (isAbsolute(requested) || requested.split(/[\\/]/).includes('..')) return null;
  const real = await realpath(resolve(root, requested)).catch(() => null);
  if (real === null) return null;
  return isInside(root, real) ? real : null;
}
