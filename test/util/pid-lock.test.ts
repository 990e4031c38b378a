import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquirePidLock, liveLockHolder } from '../../shared/util/pid-lock.ts';
import { makeFifo } from '../agent/fifo.ts';

const options = {
  busy: (holder: number | undefined) => new Error(`held by ${holder}`),
  failed: (error: unknown) => new Error(String(error)),
  notALock: (path: string, found: string) => new Error(`not a lock: ${path} is ${found}`),
  processIdentity: true,
};

/** A process id that is not running: a child that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/** What is at `path`: its kind and, for a file or a symbolic link, its content or target. */
async function entry(path: string): Promise<string> {
  const info = lstatSync(path);
  if (info.isFile()) return `file ${await readFile(path, 'utf8')}`;
  if (info.isSymbolicLink()) return `symlink ${await readlink(path)}`;
  return info.isDirectory() ? 'directory' : info.isFIFO() ? 'fifo' : 'other';
}

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
  // A shell starts a child, then becomes `sleep`, which never reaps it: the child, killed by this
  // test when it should end (not on a timer, which a loaded machine outruns), is left a zombie.
  const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => parent.kill('SIGKILL'));
  const child = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (data: Buffer) => resolve(data.toString().trim()))));
  const path = join(dir, 'data.lock');

  // While it runs, its lock holds.
  await writeFile(path, `${child}\n`);
  assert.throws(() => acquirePidLock(path, options), new RegExp(`held by ${child}`));
  // Once it is a zombie, it does not.
  process.kill(child, 'SIGKILL');
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

test("something other than a lock file at the lock path (a user's file, a directory, a symbolic link) is refused, naming it, and left in place", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-not-a-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cases: [string, string, (path: string) => Promise<unknown>][] = [
    ['poetry.lock', 'a file with other content', (path) => writeFile(path, '# my lock file\n[[package]]\nname = "numpy"\n')],
    // A first line that could be a process id (of no running process) does not make it a lock.
    ['numbered.lock', 'a file with other content', (path) => writeFile(path, `${deadPid()}\nsome notes\n`)],
    ['dir.lock', 'a directory', (path) => mkdir(path)],
    ['link.lock', 'a symbolic link', (path) => symlink(join(dir, 'missing'), path)],
  ];
  for (const [name, found, make] of cases) {
    const path = join(dir, name);
    await make(path);
    const before = await entry(path);
    assert.throws(() => acquirePidLock(path, options), { message: `not a lock: ${path} is ${found}` }, name);
    assert.equal(await entry(path), before, `${name} is left as it was`);
    assert.equal(liveLockHolder(path), undefined, `${name} names no holder`);
  }
  assert.deepEqual(readdirSync(dir).sort(), cases.map(([name]) => name).sort(), 'no takeover or temporary file is left');
  // Without notALock, failed words the refusal.
  const { notALock: _, ...plain } = options;
  assert.throws(() => acquirePidLock(join(dir, 'dir.lock'), plain), { message: `Error: ${join(dir, 'dir.lock')} is a directory, not a lock file` });
});

test('a FIFO at the lock path is refused without reading it (which would wait for a writer), and left in place', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-fifo-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'data.lock');
  makeFifo(path);
  // After 3 s, a writer lets every read that waits go on (while a FIFO is there), so that a lock that reads it fails this test rather than hanging it.
  const writer = spawn('sh', ['-c', 'sleep 3; while :; do if [ -p "$0" ]; then : > "$0"; else sleep 0.1; fi; done', path], { stdio: 'ignore' });
  t.after(() => writer.kill('SIGKILL'));
  const started = Date.now();
  assert.throws(() => acquirePidLock(path, options), { message: `not a lock: ${path} is a FIFO` });
  assert.equal(liveLockHolder(path), undefined);
  assert.ok(Date.now() - started < 2000, `refused at once, not after a writer came (${Date.now() - started} ms)`);
  assert.equal(await entry(path), 'fifo', 'left in place');
  assert.deepEqual(readdirSync(dir), ['data.lock']);
});

test('a stale lock whose takeover file is something else is refused naming the takeover path; neither is removed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-not-a-takeover-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'data.lock');
  const stale = `${deadPid()}\n`;
  await writeFile(path, stale);
  await mkdir(`${path}.takeover`);
  assert.throws(() => acquirePidLock(path, options), { message: `not a lock: ${path}.takeover is a directory` });
  await rm(`${path}.takeover`, { recursive: true });
  await writeFile(`${path}.takeover`, 'notes\n');
  assert.throws(() => acquirePidLock(path, options), { message: `not a lock: ${path}.takeover is a file with other content` });
  assert.equal(await readFile(path, 'utf8'), stale, 'the stale lock stays');
  assert.equal(await readFile(`${path}.takeover`, 'utf8'), 'notes\n');
  assert.deepEqual(readdirSync(dir).sort(), ['data.lock', 'data.lock.takeover']);
});

test('real stale locks are still taken over: a dead process\'s (with or without its identity line), an empty one (a crash before its id reached the disk), and a stale takeover file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-stale-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'data.lock');
  for (const [content, takeover] of [[`${deadPid()}\n`], [`${deadPid()}\n00000000-0000-0000-0000-000000000000 1\n`], [''], [`${deadPid()}\n`, `${deadPid()}\n`], ['', '']]) {
    await writeFile(path, content!);
    if (takeover !== undefined) await writeFile(`${path}.takeover`, takeover);
    const lock = acquirePidLock(path, options);
    assert.equal(readFileSync(path, 'utf8').split('\n')[0], String(process.pid), JSON.stringify([content, takeover]));
    lock.release();
    assert.deepEqual(readdirSync(dir), [], 'released; no takeover or temporary file is left');
  }
});

test('a lock that cannot be created names the lock file, not the temporary file it is written through', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-missing-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'missing', 'data.lock');
  let seen: NodeJS.ErrnoException | undefined;
  assert.throws(() => acquirePidLock(path, { ...options, failed: (error) => ((seen = error as NodeJS.ErrnoException), new Error('refused')) }), { message: 'refused' });
  assert.equal(seen?.message, `ENOENT: no such file or directory, open '${path}'`);
  assert.equal(seen?.path, path);
  assert.equal(seen?.code, 'ENOENT');
  assert.equal(seen?.syscall, 'open');
});
