import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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
    const git = join(REPO_ROOT, '.git');
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
