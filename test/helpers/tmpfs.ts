import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { deferCleanup } from './cleanup.ts';

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
 * Both through deferCleanup, whose steps run last first: the agents and processes a test starts on
 * the mount later, and stops through deferCleanup too, are stopped first. A process still running
 * at the lazy unmount (-l) would write by path into the directory underneath, and keep it from
 * being removed. A test needs no cleanup of its own to remount it read-write: the unmount detaches
 * it either way.
 */
export async function mountTmpfs(t: TestContext, name: string, size: string): Promise<string | null> {
  const mount = await mkdtemp(join(tmpdir(), `fleetprune-${name}-`));
  deferCleanup(t, () => rm(mount, { recursive: true, force: true }));
  const mounted = await commandSucceeds('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mount]);
  if (mounted) deferCleanup(t, () => commandSucceeds('umount', ['-l', mount]));
  return mounted ? mount : null;
}

/**
 * `dir` bound onto itself read-only, as a disk remounted read-only after errors is; unmounted after
 * the test. False when this machine cannot bind-mount (not root): the test skips.
 */
export async function bindReadOnly(t: TestContext, dir: string): Promise<boolean> {
  if (!(await commandSucceeds('mount', ['--bind', dir, dir]))) return false;
  deferCleanup(t, () => commandSucceeds('umount', ['-l', dir]));
  if (!(await commandSucceeds('mount', ['-o', 'remount,bind,ro', dir]))) throw new Error(`cannot remount ${dir} read-only`);
  return true;
}
