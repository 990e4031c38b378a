import { access, readFile } from 'node:fs/promises';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

/** Where the first-install order (server first, then Mosquitto) is explained. */
export const FIRST_INSTALL_HINT = 'is Mosquitto running? see deploy/mosquitto/README.md for the first-install order';

/**
 * The reload found no Mosquitto to signal: no pid file (Mosquitto removes it when it stops, and
 * has not written it before its first start), or no Mosquitto with its pid (it crashed; the pid
 * may since belong to another program, or to a Mosquitto that exited unreaped). Such a
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
    // A pid file a crashed Mosquitto left names a process id the system may since have given to
    // another program: SIGHUP would end most of them. Only a Mosquitto is signalled.
    const running = await processOf(pid);
    if (running === 'gone') throw new MosquittoNotRunning(`no process ${pid} of the pid file ${pidFile} (${FIRST_INSTALL_HINT})`);
    if (running !== 'unknown' && running.name !== 'mosquitto') {
      throw new MosquittoNotRunning(`process ${pid} of the pid file ${pidFile} is ${JSON.stringify(running.name)}, not Mosquitto: a stale pid file (${FIRST_INSTALL_HINT})`);
    }
    if (running !== 'unknown' && running.exited) throw new MosquittoNotRunning(`process ${pid} of the pid file ${pidFile} has exited (${FIRST_INSTALL_HINT})`);
    try {
      process.kill(pid, 'SIGHUP');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') throw new MosquittoNotRunning(`no process ${pid} of the pid file ${pidFile} (${FIRST_INSTALL_HINT})`);
      throw new UserError(`cannot signal mosquitto (pid ${pid}) to reload: ${errorMessage(error)}`);
    }
  };
}

/**
 * Process `pid`'s program name and whether it has exited but is not reaped yet (a zombie), from
 * Linux's /proc/<pid>/stat; 'gone' when there is no such process (or, with /proc mounted hidepid,
 * another user's, which could not be signalled either), 'unknown' when /proc does not tell
 * (another system, a read refused): the signal is then sent as before.
 */
async function processOf(pid: number): Promise<{ name: string; exited: boolean } | 'gone' | 'unknown'> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return (await access('/proc/self/stat').then(() => true, () => false)) ? 'gone' : 'unknown';
    return 'unknown';
  }
  // "<pid> (<comm>) <state> ...": the name may itself hold spaces and parentheses.
  const close = stat.lastIndexOf(')');
  const name = stat.slice(stat.indexOf('(') + 1, close);
  if (close < 0 || !name) return 'unknown';
  return { name, exited: stat.charAt(close + 2) === 'Z' };
}
