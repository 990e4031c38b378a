import { isAbsolute, relative, sep } from 'node:path';

/** Whether the real path `real` is strictly inside the real directory `root` (not `root` itself, nor out of it). */
export function isInside(root: string, real: string): boolean {
  const rel = relative(root, real);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}
