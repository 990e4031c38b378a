import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
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
 */
export function lockPruneOutput(outDir: string): PruneOutputLock {
  const path = `${outDir}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      let held = true;
      return {
        release() {
          if (!held) return;
          held = false;
          try {
            unlinkSync(path);
          } catch {
            // Already gone (removed by hand): nothing to release.
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new UserError(`cannot lock --out ${outDir}: ${errorMessage(error)}`, { cause: error });
      const holder = lockHolder(path);
      if (holder !== undefined && holder !== process.pid && isRunning(holder)) {
        throw new UserError(`--out ${outDir} is being written by another fleetprune prune (process ${holder}); wait for it to finish or choose another --out`);
      }
      // Left by a run that did not end cleanly: taken over (once; a second EEXIST means another run took it first).
      try {
        unlinkSync(path);
      } catch {
        // Another run removed it first; the next attempt finds out who holds it now.
      }
    }
  }
  throw new UserError(`--out ${outDir} is being written by another fleetprune prune; wait for it to finish or choose another --out`);
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
