import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquirePidLock } from '../../shared/util/pid-lock.ts';

const options = { busy: (holder: number | undefined) => new Error(`held by ${holder}`), failed: (error: unknown) => new Error(String(error)), processIdentity: true };

/** The state letter of a process (Linux /proc), or undefined. */
function stateOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

test('a lock named by a process that has ended but not been reaped yet (a zombie) is taken over; one named by a live process is not', async (t) => {
  if (!existsSync('/proc/self/stat')) return t.skip('needs Linux /proc');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-pid-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // A shell starts a short-lived child, then becomes `sleep`, which never reaps it: the child ends a zombie.
  const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => parent.kill('SIGKILL'));
  const child = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (data: Buffer) => resolve(data.toString().trim()))));
  const path = join(dir, 'data.lock');

  // While it runs, its lock holds.
  await writeFile(path, `${child}\n`);
  assert.throws(() => acquirePidLock(path, options), new RegExp(`held by ${child}`));
  // Once it is a zombie, it does not.
  const deadline = Date.now() + 10_000;
  while (stateOf(child) !== 'Z' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(stateOf(child), 'Z', 'the child is a zombie');
  const lock = acquirePidLock(path, options);
  assert.equal(readFileSync(path, 'utf8').split('\n')[0], String(process.pid));
  lock.release();
  // The parent itself, alive, still holds a lock that names it.
  await writeFile(path, `${parent.pid}\n`);
  assert.throws(() => acquirePidLock(path, options), new RegExp(`held by ${parent.pid}`));
});

test('a lock the disk cannot take (full) fails without leaving its temporary file behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-lock-full-'));
  // A tiny tmpfs, filled up: files can be created there, but not written.
  const mounted = await new Promise<boolean>((resolve) => spawn('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', dir], { stdio: 'ignore' }).on('exit', (code) => resolve(code === 0)).on('error', () => resolve(false)));
  // Hooks run in order: unmounted first, then removed.
  if (mounted) t.after(() => new Promise((resolve) => spawn('umount', [dir], { stdio: 'ignore' }).on('exit', resolve)));
  t.after(() => rm(dir, { recursive: true, force: true }));
  if (!mounted) return t.skip('cannot mount a tmpfs here (needs root)');
  await writeFile(join(dir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => {});
  assert.throws(() => acquirePidLock(join(dir, 'agent.lock'), options), /ENOSPC/);
  assert.deepEqual(readdirSync(dir), ['filler'], 'no lock, no temporary file');
});
