import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout's root (a path with spaces is decoded, as a URL's pathname is not). */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMMIT = /^[0-9a-f]{40}$/;

let cached: string | null | undefined;

/**
 * The git commit fleetprune runs from, read from the checkout's .git (no git process): HEAD, or
 * the branch it names (a loose ref, else packed-refs). Null outside a git checkout (an npm
 * install, a bundle, a worktree's .git file) or when it cannot be read. Changes not committed are
 * not seen: it names the commit the working tree started from.
 */
export function buildCommit(): string | null {
  if (cached !== undefined) return cached;
  cached = null;
  try {
    const checkout = checkoutRoot();
    if (checkout === null) return cached;
    const git = join(checkout, '.git');
    const head = readFileSync(join(git, 'HEAD'), 'utf8').trim();
    if (COMMIT.test(head)) return (cached = head);
    const ref = /^ref: (refs\/[^\s]+)$/.exec(head)?.[1];
    if (!ref || ref.split('/').includes('..')) return cached;
    try {
      const loose = readFileSync(join(git, ref), 'utf8').trim();
      if (COMMIT.test(loose)) return (cached = loose);
    } catch {
      // Not a loose ref: packed.
    }
    const packed = readFileSync(join(git, 'packed-refs'), 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .find(([sha, name]) => name === ref && COMMIT.test(sha ?? ''));
    if (packed) cached = packed[0]!;
  } catch {
    // Not a git checkout.
  }
  return cached;
}

/**
 * The directory holding fleetprune's git checkout: the code's own root, or an ancestor (the test
 * runner compiles the tree under node_modules/.cache of the checkout). Only a directory whose
 * package.json is fleetprune's: the .git of a project that installed fleetprune as a dependency
 * is that project's, not fleetprune's.
 */
function checkoutRoot(): string | null {
  for (let dir = REPO_ROOT, depth = 0; depth < 8; depth++) {
    if (existsSync(join(dir, '.git'))) {
      try {
        return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'fleetprune' ? dir : null;
      } catch {
        return null;
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
  return null;
}
