import { acquirePidLock } from '../../shared/util/pid-lock.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

export interface PruneOutputLock {
  /** Removes the lock; safe to call more than once, and from a signal handler (synchronous). */
  release(): void;
}

/**
 * One `fleetprune prune` at a time per --out: two runs writing the same directory would replace
 * each other's artifact, general/ and report.json in turns, leaving a pruned model next to the
 * report of another run. The lock is `<out>.lock`, a sibling like the run's staging directories,
 * holding the process id (and, on Linux, which boot and process start it belongs to); a lock whose
 * process is gone (killed with -9, or before a reboot that gave its id to another process) is
 * taken over, one run at a time (shared/util/pid-lock.ts). Anything else at that path is refused, never removed.
 */
export function lockPruneOutput(outDir: string, options: { onStaleLock?: () => void } = {}): PruneOutputLock {
  return acquirePidLock(`${outDir}.lock`, {
    busy: (holder) =>
      new UserError(`--out ${outDir} is being written by another fleetprune prune${holder === undefined ? '' : ` (process ${holder})`}; wait for it to finish or choose another --out`),
    failed: (error) => new UserError(`cannot lock --out ${outDir}: ${errorMessage(error)}`, { cause: error }),
    // A user's own file that happens to be named so (`--out poetry` beside a poetry.lock) is theirs: left alone.
    notALock: (path, found) => new UserError(`cannot lock --out ${outDir}: ${path} is ${found}, not a fleetprune lock (left as it is); remove it or choose another --out`),
    processIdentity: true,
    ...options,
  });
}
