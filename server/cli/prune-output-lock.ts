import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

export interface PruneOutputLock {
  /** Removes the lock; safe to call more than once, and from a signal handler (synchronous). */
  release(): void;
}

/**
 * One `fleetprune prune` at a time per --out: two runs writing the same directory would replace
 * each other's artifact, general/ and report.json in turns, leaving a pruned model next to the
 * report of another run. The lock is `<out>.lock`, a sibling like the run's staging directories,
 * holding the process id. A lock whose process is gone (killed with -9) is taken over.
 *
 * Taking over is itself exclusive: only the run that creates `<out>.lock.takeover` may remove the
 * stale lock, and it checks again, holding it, that the lock is still the stale one. Without it,
 * two runs started together after a kill -9 could both see the stale lock, and the second's removal
 * would delete the lock the first had just created: both would write the directory.
 */
export function lockPruneOutput(outDir: string, options: { onStaleLock?: () => void } = {}): PruneOutputLock {
  const path = `${outDir}.lock`;
  const busy = (holder: number | undefined) =>
    new UserError(`--out ${outDir} is being written by another fleetprune prune${holder === undefined ? '' : ` (process ${holder})`}; wait for it to finish or choose another --out`);
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createLockFile(path, outDir)) return heldLock(path);
    const holder = lockHolder(path);
    if (holder !== undefined && holder !== process.pid && isRunning(holder)) throw busy(holder);
    // Left by a run that did not end cleanly: taken over by whoever holds the takeover file.
    options.onStaleLock?.(); // tests: another run acts between seeing the stale lock and taking it over
    const takeover = `${path}.takeover`;
    if (!createLockFile(takeover, outDir)) {
      const taker = lockHolder(takeover);
      if (taker !== undefined && taker !== process.pid && isRunning(taker)) throw busy(taker);
      removeFile(takeover); // left by a run killed while taking over
      continue;
    }
    try {
      const now = lockHolder(path);
      if (now !== holder && now !== undefined && isRunning(now)) throw busy(now);
      removeFile(path);
      if (createLockFile(path, outDir)) return heldLock(path);
    } finally {
      removeFile(takeover);
    }
  }
  throw busy(undefined);
}

/**
 * Creates `path` holding this process's id; false when it exists already. The id is written to a
 * temporary file first, which is then hard-linked to `path` (a link fails if `path` exists): a
 * lock file is never seen empty, which another run would take for a stale lock. Where hard links
 * are not supported, `path` is created directly.
 */
function createLockFile(path: string, outDir: string): boolean {
  const failed = (error: unknown) => new UserError(`cannot lock --out ${outDir}: ${errorMessage(error)}`, { cause: error });
  const temp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(temp, `${process.pid}\n`, { flag: 'wx' });
  } catch (error) {
    throw failed(error);
  }
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw failed(error);
  } finally {
    removeFile(temp);
  }
  try {
    writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw failed(error);
  }
}

function heldLock(path: string): PruneOutputLock {
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      removeFile(path);
    },
  };
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone (removed by hand, or by the run that took it over).
  }
}

function lockHolder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
