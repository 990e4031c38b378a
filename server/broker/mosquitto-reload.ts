import { readFile } from 'node:fs/promises';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

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
      throw new UserError(`cannot read the mosquitto pid file ${pidFile}: ${errorMessage(error)}`);
    }
    if (!Number.isInteger(pid) || pid <= 1) throw new UserError(`${pidFile}: not a process id`);
    try {
      process.kill(pid, 'SIGHUP');
    } catch (error) {
      throw new UserError(`cannot signal mosquitto (pid ${pid}) to reload: ${errorMessage(error)}`);
    }
  };
}
