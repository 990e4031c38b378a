import { statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { UserError, errorMessage } from '../shared/util/errors.ts';
import { acquirePidLock, liveLockHolder } from '../shared/util/pid-lock.ts';

/** Errors of a disk that takes no writes at all: full, over its quota, or read-only (a worn SD card remounted so). */
const DISK_TAKES_NO_WRITES = new Set(['ENOSPC', 'EDQUOT', 'EROFS']);

export interface DataDirLock {
  /** Why no lock file holds the data dir (its disk takes no writes), when none does. */
  readonly withoutFile: string | undefined;
  release(): void;
}

class DiskTakesNoWrites extends Error {}

/**
 * One agent per data dir: `<data-dir>/agent.lock` (a stale one, left by kill -9, is taken over),
 * and on Linux an abstract socket named after the data dir's device and inode (the same directory
 * reached by another path or a bind mount has the same name; another container's own volume at
 * the same path has another), which needs no disk and goes with its process. A data dir whose
 * disk takes no writes (full, read-only) cannot hold the lock file; the agent then runs on the
 * socket alone, once no live agent holds the file: a device whose disk filled up must still serve
 * its model after a restart.
 */
export async function lockAgentDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, 'agent.lock');
  const busy = (holder: number | undefined) =>
    new UserError(`--data-dir ${dataDir} is in use by another fleetprune agent${holder === undefined ? '' : ` (process ${holder})`}; stop it or choose another --data-dir`);
  let withoutFile: string | undefined;
  let file: { release(): void } | undefined;
  try {
    file = acquirePidLock(path, {
      busy,
      failed: (error) => {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== undefined && DISK_TAKES_NO_WRITES.has(code)) return new DiskTakesNoWrites(errorMessage(error));
        return new UserError(`cannot use the data dir ${dataDir}: ${errorMessage(error)}`, { cause: error });
      },
      notALock: (path, found) => new UserError(`cannot use the data dir ${dataDir}: ${path} is ${found}, not a fleetprune lock (left as it is); remove it or choose another --data-dir`),
      processIdentity: true,
    });
  } catch (error) {
    if (!(error instanceof DiskTakesNoWrites)) throw error;
    const holder = liveLockHolder(path);
    if (holder !== undefined) throw busy(holder);
    withoutFile = error.message;
  }
  let socket: Server | undefined;
  try {
    socket = await holdAbstractSocket(dataDir);
  } catch (error) {
    file?.release();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw busy(undefined);
    if (withoutFile !== undefined) throw new UserError(`cannot use the data dir ${dataDir}: its disk takes no writes (${withoutFile}) and no other lock is possible here (${errorMessage(error)})`);
  }
  return {
    withoutFile,
    release() {
      file?.release();
      socket?.close();
    },
  };
}

/** Listens on `\0fleetprune-agent:<device>:<inode>` of the data dir (Linux); resolves undefined elsewhere. */
function holdAbstractSocket(dataDir: string): Promise<Server | undefined> {
  if (process.platform !== 'linux') return Promise.resolve(undefined);
  const { dev, ino } = statSync(dataDir, { bigint: true });
  const name = `${dev}:${ino}`;
  return new Promise((resolve, reject) => {
    const server = createServer((connection) => connection.destroy());
    server.once('error', reject);
    server.listen(`\0fleetprune-agent:${name}`, () => {
      server.off('error', reject);
      server.unref();
      resolve(server);
    });
  });
}
