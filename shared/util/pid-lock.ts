import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, lstatSync, openSync, readFileSync, readSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';

export interface PidLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock; safe to call more than once, and from a signal handler (synchronous). */
  release(): void;
}

export interface PidLockOptions {
  /** The refusal when another live process holds the lock (`holder` undefined: it could not be named). The caller words it. */
  busy(holder: number | undefined): Error;
  /** The error when the lock file cannot be created at all (a read-only or missing directory). */
  failed(error: unknown): Error;
  /**
   * The refusal when something other than one of these lock files is at the lock path or at
   * `<path>.takeover` (`path`): a user's own `poetry.lock` beside `--out poetry`, a directory, a
   * FIFO. `found` says what is there ('a directory'); it is left in place. Without it, `failed` words it.
   */
  notALock?(path: string, found: string): Error;
  /**
   * Also write which boot and which process start the id belongs to (Linux; a second line), so a
   * lock whose id a later boot gave to another process is seen to be stale: a device that lost
   * power must not find its agent's old id held by some other daemon and refuse to start for ever.
   */
  processIdentity?: boolean;
  /** Tests: another process acts between this one seeing a stale lock and taking it over. */
  onStaleLock?: () => void;
}

/**
 * One process at a time holds `path`, a file holding its process id (`fleetprune prune --out`,
 * an agent's or a server's data directory). A lock whose process is gone (killed with -9) is
 * taken over; so is one naming this very process (a pid reused after a restart, in a container).
 *
 * Taking over is itself exclusive: only the process that creates `<path>.takeover` may remove the
 * stale lock, and it checks again, holding it, that the lock is still the stale one. Without it,
 * two processes started together after a kill -9 could both see the stale lock, and the second's
 * removal would delete the lock the first had just created: both would go on.
 *
 * A held lock is also removed when the process exits through `process.exit` (an uncaught failure),
 * not only by `release()`; a process killed by a signal leaves it, stale, for the next one.
 *
 * Only a file in the format createLockFile writes is ever taken over: anything else at either path
 * (a user's file that happens to have the name, a directory, a symbolic link, a FIFO) is refused
 * through `notALock` and never removed.
 */
export function acquirePidLock(path: string, options: PidLockOptions): PidLock {
  const { busy } = options;
  const read = (file: string) => {
    try {
      return readLock(file);
    } catch (error) {
      if (error instanceof NotALock) throw options.notALock?.(file, error.found) ?? options.failed(error);
      throw options.failed(error);
    }
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createLockFile(path, options)) return heldLock(path);
    const stale = read(path);
    if (heldByAnother(stale)) throw busy(stale.pid);
    // Left by a process that did not end cleanly: taken over by whoever holds the takeover file.
    options.onStaleLock?.();
    const takeover = `${path}.takeover`;
    if (!createLockFile(takeover, options)) {
      const taker = read(takeover);
      if (heldByAnother(taker)) throw busy(taker.pid);
      removeFile(takeover); // left by a process killed while taking over
      continue;
    }
    try {
      const now = read(path);
      if (now?.pid !== stale?.pid && heldByAnother(now)) throw busy(now.pid);
      removeFile(path);
      if (createLockFile(path, options)) return heldLock(path);
    } finally {
      removeFile(takeover);
    }
  }
  throw busy(undefined);
}

/**
 * Creates `path` holding this process's id; false when it exists already. The id is written to a
 * temporary file first, which is then hard-linked to `path` (a link fails if `path` exists): a
 * lock file is never seen empty, which another process would take for a stale lock. Where hard
 * links are not supported, `path` is created directly.
 */
function createLockFile(path: string, options: PidLockOptions): boolean {
  const temp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
  const identity = options.processIdentity ? processIdentity(process.pid) : undefined;
  const content = `${process.pid}\n${identity === undefined ? '' : `${identity}\n`}`;
  try {
    writeFileSync(temp, content, { flag: 'wx' });
  } catch (error) {
    // Created but not written (a full disk): not left behind, one more each time a supervisor restarts the process.
    removeFile(temp);
    throw options.failed(namingLockFile(error, temp, path));
  }
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw options.failed(error);
  } finally {
    removeFile(temp);
  }
  try {
    writeFileSync(path, content, { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw options.failed(error);
  }
}

/**
 * The error of creating the temporary file, naming the lock file instead: the temporary name is
 * this module's detail (`open '/data/agent.lock'`, not `open '/data/agent.lock.812-9c8ef66a'`).
 */
function namingLockFile(error: unknown, temp: string, path: string): unknown {
  if (!(error instanceof Error) || !error.message.includes(temp)) return error;
  const renamed = Object.assign(new Error(error.message.replaceAll(temp, path)), error);
  if ((error as NodeJS.ErrnoException).path === temp) (renamed as NodeJS.ErrnoException).path = path;
  return renamed;
}

/** The locks this process holds, removed by one 'exit' listener (however many locks it takes). */
const held = new Set<{ path: string }>();
let exitHook = false;

function heldLock(path: string): PidLock {
  const entry = { path };
  held.add(entry);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const lock of held) removeFile(lock.path);
      held.clear();
    });
  }
  let holding = true;
  return {
    path,
    release() {
      if (!holding) return;
      holding = false;
      held.delete(entry);
      removeFile(path);
    },
  };
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone (removed by hand, or by the process that took it over).
  }
}

/** The process holding the lock at `path` when it still runs (see holds), else undefined (also when no lock file is there); reads only. */
export function liveLockHolder(path: string): number | undefined {
  try {
    const lock = readLock(path);
    return heldByAnother(lock) ? lock.pid : undefined;
  } catch {
    return undefined; // not a lock file, or unreadable: it names no holder
  }
}

/** A lock file's content: its process id (none when empty) and, with processIdentity, its boot and start (`<boot id> <start ticks>`). */
interface LockContent {
  pid: number | undefined;
  identity: string | undefined;
}

/** Something at a lock path that is not one of these lock files; `found` says what it is. */
class NotALock extends Error {
  constructor(path: string, readonly found: string) {
    super(`${path} is ${found}, not a lock file`);
  }
}

/**
 * What createLockFile writes: a process id line, and optionally a `<boot id> <start ticks>` line.
 * Or nothing: an empty file is what a crash leaves (a power cut before the id written reached the
 * disk; a process killed between creating and writing the file where there are no hard links),
 * and it holds nothing anyone could lose, so it is taken for a stale lock, as it always was: a
 * device must not stay refused after a power cut. (Where there are no hard links, a lock being
 * created is empty for an instant too; a second process seeing it then may take it over, as before.)
 */
const LOCK_CONTENT = /^(?:([1-9]\d{0,9})\n(?:(\S+ \d+)\n)?)?$/;
/** A lock file is under 80 bytes: a larger file is not read further. */
const MAX_LOCK_BYTES = 128;
/** Neither following a symbolic link swapped in since the lstat, nor waiting for a FIFO's writer. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * The lock file at `path`, undefined when there is none; throws NotALock when something else is
 * there. Other than a regular file is refused by its lstat, without being opened (a FIFO's read
 * would block), and a regular file by its content, read no further than a lock's length.
 */
function readLock(path: string): LockContent | undefined {
  let fd: number;
  try {
    const info = lstatSync(path);
    if (!info.isFile()) throw new NotALock(path, kindOf(info));
    fd = openSync(path, OPEN_FLAGS);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // released meanwhile
    throw error;
  }
  try {
    const info = fstatSync(fd); // what was opened, should it have been replaced since the lstat
    if (!info.isFile()) throw new NotALock(path, kindOf(info));
    const buffer = Buffer.alloc(MAX_LOCK_BYTES + 1);
    const size = readSync(fd, buffer, 0, buffer.length, 0);
    const match = size > MAX_LOCK_BYTES ? null : LOCK_CONTENT.exec(buffer.toString('utf8', 0, size));
    if (!match) throw new NotALock(path, 'a file with other content');
    return { pid: match[1] === undefined ? undefined : Number(match[1]), identity: match[2] };
  } finally {
    closeSync(fd);
  }
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isSymbolicLink()) return 'a symbolic link';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  return 'a device';
}

/** Whether the lock names another process that still holds it (see holds); a lock naming this one is stale (a reused pid). */
function heldByAnother(lock: LockContent | undefined): lock is LockContent & { pid: number } {
  return lock?.pid !== undefined && lock.pid !== process.pid && holds(lock.pid, lock.identity);
}

/**
 * Whether `pid`, named by a lock, still holds it: it runs and, when the lock records its identity
 * and the system can tell this process's, it is that very process (same boot, same start time),
 * not another one that was given the same id after a reboot. When either cannot be told, a running
 * process is taken for the holder: refusing wrongly is safer than two holders.
 */
function holds(pid: number, recorded: string | undefined): boolean {
  if (!isRunning(pid)) return false;
  if (recorded === undefined) return true;
  const current = processIdentity(pid);
  return current === undefined || current === recorded;
}

/** `<boot id> <start time in clock ticks since boot>` of a process (Linux /proc); undefined elsewhere, or when /proc hides it. */
function processIdentity(pid: number): string | undefined {
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (in parentheses, which may itself hold spaces and parentheses): state is field 3, starttime field 22.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return bootId && start && /^\d+$/.test(start) ? `${bootId} ${start}` : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists, under another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !hasExited(pid);
}

/**
 * Whether `pid` is a process that has ended but not been reaped by its parent yet (a zombie; Linux
 * /proc): signals still reach its id, but it runs nothing and holds no lock. A supervisor that is
 * slow to reap its dead agent must not keep the next one from starting.
 */
function hasExited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return false; // no /proc, or it hides the process: taken for running, as before
  }
}
