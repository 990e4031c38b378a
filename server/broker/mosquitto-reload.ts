import { access, readFile } from 'node:fs/promises';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

/** Where the first-install order (server first, then Mosquitto) is explained. */
export const FIRST_INSTALL_HINT = 'is Mosquitto running? see deploy/mosquitto/README.md for the first-install order';

/**
 * The reload found no Mosquitto to signal: no pid file (Mosquitto removes it when it stops, and
 * has not written it before its first start), or no process with its pid (it crashed). Such a
 * Mosquitto reads the files when it starts, so they are not stale because of it — unless the
 * server is connected to a Mosquitto after all (a pid file path that is wrong): ExternalBroker
 * decides which.
 */
export class MosquittoNotRunning extends UserError {}

/**
 * Makes a running Mosquitto re-read its password and ACL files: SIGHUP to the pid in its
 * pid_file (e.g. /run/mosquitto/mosquitto.pid). For ExternalBroker's `mosquittoAuth.reload`.
 */
export function reloadMosquittoFromPidFile(pidFile: string): () => Promise<void> {
  return async () => {
    let pid: number;
    try {
      pid = Number((await readFile(pidFile, 'utf8')).trim());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MosquittoNotRunning(`no pid file at ${pidFile} (${FIRST_INSTALL_HINT})`);
      throw new UserError(`cannot read the mosquitto pid file ${pidFile}: ${errorMessage(error)}`);
    }
    if (!Number.isInteger(pid) || pid <= 1) throw new UserError(`${pidFile}: not a process id`);
    const name = await processName(pid);
    if (name === null) throw new MosquittoNotRunning(`no process ${pid} of the pid file ${pidFile} (${FIRST_INSTALL_HINT})`);
    // A pid file a crashed Mosquitto left names a process id the system may since have given to
    // another program: SIGHUP would end most of them. Only a Mosquitto is signalled.
    if (name !== undefined && !name.includes('mosquitto')) {
      throw new MosquittoNotRunning(`process ${pid} of the pid file ${pidFile} is ${JSON.stringify(name)}, not Mosquitto: a stale pid file (${FIRST_INSTALL_HINT})`);
    }
    try {
      process.kill(pid, 'SIGHUP');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') throw new MosquittoNotRunning(`no process ${pid} of the pid file ${pidFile} (${FIRST_INSTALL_HINT})`);
      throw new UserError(`cannot signal mosquitto (pid ${pid}) to reload: ${errorMessage(error)}`);
    }
  };
}

/**
 * The program name of process `pid` (Linux: /proc/<pid>/comm): null when there is no such
 * process, undefined where /proc does not tell (another system).
 */
async function processName(pid: number): Promise<string | null | undefined> {
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    try {
      await access('/proc/self/comm');
    } catch {
      return undefined;
    }
    return null;
  }
}
