/**
 * A warm `fleetprune` for tests (test/helpers/warm-cli.ts starts it): runs the command lines it
 * is sent over IPC, one at a time, through the CLI's own main() as `bin/fleetprune.js` runs it,
 * each with the exact environment it is sent. A short client command (models list, rollout
 * status, ...) then costs its own work, not a process start (about half a CPU-second each).
 *
 * Nothing is captured: a case writes to this process's real stdout and stderr, and its end is a
 * marker line on each (`<MARK><id>` on stderr, `<MARK><id> <exit code>` on stdout), which the
 * parent splits the streams on. A case that ends the process (process.exit, an uncaught failure)
 * ends it as it would end its own process: the parent sees the exit code and the output so far.
 */
import { main } from '../../server/cli/main.ts';
import { WARM_CLI_MARK, type WarmCliCase } from './warm-cli-protocol.ts';

// Each run adds its own listeners for uncaught failures and closed output.
process.setMaxListeners(0);
process.stdout.setMaxListeners(0);
process.stderr.setMaxListeners(0);
// The test process is gone (ended, or killed): so is its runner.
process.on('disconnect', () => process.exit(0));

async function runCase({ id, args, env }: WarmCliCase): Promise<void> {
  for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
  Object.assign(process.env, env);
  let code: number;
  try {
    code = await main(['node', 'bin/fleetprune.js', ...args]);
  } catch (error) {
    // main() turns every failure into an exit code; this is a bug in it.
    process.stderr.write(`warm-cli-runner: main() threw: ${String(error)}\n`);
    code = 1;
  }
  process.exitCode = 0;
  process.stderr.write(`${WARM_CLI_MARK}${id}\n`);
  process.stdout.write(`${WARM_CLI_MARK}${id} ${code}\n`);
}

let queue = Promise.resolve();
process.on('message', (message: WarmCliCase) => {
  queue = queue.then(() => runCase(message));
});
