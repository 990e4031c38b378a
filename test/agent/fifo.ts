import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** Makes a FIFO at `path` (nobody writes to it: a blocking read of it waits for good). */
export function makeFifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/** Lets a reader blocked on the FIFO at `path` go (a writer opens it and closes it: end of file); nothing when none waits. */
export async function releaseFifo(path: string): Promise<void> {
  try {
    await (await open(path, constants.O_WRONLY | constants.O_NONBLOCK)).close();
  } catch {
    // ENXIO: no reader is waiting.
  }
}

/**
 * `promise`'s outcome, or 'blocked' when it has not settled after `ms`: then `release` runs (so that
 * a read blocked on a FIFO does not keep the test process alive) and the promise is awaited out.
 */
export async function settlesWithin<T>(promise: Promise<T>, ms: number, release: () => Promise<void>): Promise<{ value: T } | { error: unknown } | 'blocked'> {
  const settled = promise.then((value) => ({ value }), (error: unknown) => ({ error }));
  const outcome = await Promise.race([settled, new Promise<'blocked'>((resolve) => setTimeout(resolve, ms, 'blocked'))]);
  if (outcome === 'blocked') {
    await release();
    await settled;
  }
  return outcome;
}
