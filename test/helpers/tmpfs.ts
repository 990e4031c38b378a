import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** Runs `command` with `args` (its output ignored); whether it exited 0. A command that cannot start is false. */
export function commandSucceeds(command: string, args: string[]): Promise<boolean> {
  return new Promise<boolean>((resolve) => spawn(command, args, { stdio: 'ignore' }).on('exit', (code) => resolve(code === 0)).on('error', () => resolve(false)));
}

/**
 * Remounts `mount` read-only or read-write; whether it did. Read-only is refused (EBUSY) while a
 * file on it is open for writing, as one of an agent's writes is for a moment: under load such a
 * moment lasts, so it is tried again for up to 10 s.
 */
export async function remount(mount: string, mode: 'ro' | 'rw'): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (await commandSucceeds('mount', ['-o', `remount,${mode}`, mount])) return true;
    if (Date.now() >= deadline) return false;
    await delay(200);
  }
}

/**
 * A tmpfs of `size` (mount's size=, e.g. '2m') on a fresh temp directory named after `name`:
 * unmounted, then removed, after the test. Null when this machine cannot mount one (not root).
 *
 * node's test runner runs a test's after hooks in the order they were registered, so these two run
 * before those of the agents the test starts later: the unmount is lazy (-l), and detaches the
 * mount whether or not a process still has a file open on it, read-only or not. A test needs no
 * hook of its own to remount it read-write; one registered after these would find no mount left,
 * and remount() would retry for its 10 s.
 */
export async function mountTmpfs(t: TestContext, name: string, size: string): Promise<string | null> {
  const mount = await mkdtemp(join(tmpdir(), `fleetprune-${name}-`));
  const mounted = await commandSucceeds('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mount]);
  if (mounted) t.after(() => commandSucceeds('umount', ['-l', mount]));
  t.after(() => rm(mount, { recursive: true, force: true }));
  return mounted ? mount : null;
}
