import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { SHIPPED_DATASETS, type ShippedDatasetName } from '../../shared/datasets/index.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { assertWritableFile, ensureWritableDirectory } from '../../shared/util/fs-checks.ts';
import { cliLogLevel, createLogger } from '../../shared/util/log.ts';
import { parseInteger } from '../../shared/cli/option-parsers.ts';
import { onStopSignals } from '../../shared/cli/stop-signals.ts';
import type { ProgressEvent } from '../pruning/progress-events.ts';
import type { PhaseProgress } from './progress.ts';
import { MAX_SEED } from '../pruning/options.ts';

interface DemoFlags {
  dataset: string;
  devices: number;
  dataDir?: string;
  httpPort: number;
  seed: number;
  prometheusUrl?: string;
  exitWhenDone?: boolean;
  summaryJson?: string;
}

/**
 * A demo starts from nothing: its script enrolls the same device ids and registers its models
 * anew, which an earlier demo's data would refuse only after minutes of training. Its server's
 * data can be looked at again with `fleetprune server`.
 */
async function assertEmptyDemoDirectory(dir: string): Promise<void> {
  const entries = await readdir(dir);
  if (entries.length === 0) return;
  // A demo from before the token was kept has none: its server runs again, but nobody holds an admin token for it.
  const again = entries.includes(DEMO_TOKEN_FILE) ? rerunCommand(dir) : entries.includes('server') ? `fleetprune server --data-dir ${shellWord(join(dir, 'server'))}${RERUN_PORTS}` : null;
  // Any other directory holds no demo: no command to run "again" (it would start a server inside it).
  throw new UserError(`--data-dir: ${dir} is not empty; a demo starts in an empty or new directory${again ? ` (an earlier demo's server runs again with: ${again})` : ''}`);
}

/** The file in a kept --data-dir that holds the demo server's admin token: its server takes no other. */
const DEMO_TOKEN_FILE = 'admin-token';

/**
 * The demo's agents ran inside it and are gone: its server runs again without a broker port of its
 * own to keep (the default 1883 is often a local Mosquitto's, and that start failed).
 */
const RERUN_PORTS = ' --mqtt-port 0';

/** How a kept demo's server starts again, logged in with the demo's admin token (kept in its --data-dir). */
function rerunCommand(dir: string): string {
  return `FLEETPRUNE_ADMIN_TOKEN="$(cat ${shellWord(join(dir, DEMO_TOKEN_FILE))})" fleetprune server --data-dir ${shellWord(join(dir, 'server'))}${RERUN_PORTS}`;
}

/** `path` as one word for a POSIX shell: as it is when plain, else in single quotes. */
function shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/** Removes what a demo that failed wrote in --data-dir: the directory too if the demo created it. */
async function emptyDemoDirectory(dir: string, created: boolean): Promise<void> {
  if (created) await rm(dir, { recursive: true, force: true }).catch(() => {});
  else for (const entry of await readdir(dir).catch(() => [])) await rm(join(dir, entry), { recursive: true, force: true }).catch(() => {});
}

/**
 * A demo deciding with Prometheus needs one that answers, and that can scrape the demo server: at
 * a port its scrape config names (--http-port), not an ephemeral one. Checked before the demo
 * trains anything: otherwise both rollouts came out inconclusive or failed minutes later, exit 0.
 */
async function checkDemoPrometheus(url: string, httpPort: number): Promise<void> {
  if (httpPort === 0) throw new UserError('--prometheus-url: needs --http-port, the port of the demo server that Prometheus scrapes (its scrape config names it)');
  const { PrometheusProvider } = await import('../metricproviders/prometheus-provider.ts');
  let provider;
  try {
    provider = new PrometheusProvider({ url });
  } catch (error) {
    throw new UserError(errorMessage(error));
  }
  await provider.query('vector(1)', { now: new Date(), timeoutMs: 5_000 }).catch((error: unknown) => {
    throw new UserError(`--prometheus-url: Prometheus does not answer (${errorMessage(error)})`);
  });
}

/**
 * `npm start`: the whole loop on embedded defaults. A server with its embedded MQTT broker and
 * SQLite in a temporary data dir, simulated field devices running the real agent, a general model
 * pruned by ODF2NNA into two candidates, and a staged rollout of each, decided by metrics.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the pilot demo: server, simulated devices, ODF2NNA candidates and staged rollouts')
    .option('--dataset <name>', `one of ${Object.keys(SHIPPED_DATASETS).join(', ')}`, 'wine')
    .option('--devices <n>', 'simulated field devices, 8 to 500 (the pilot takes half, rounded up)', parseInteger, 12)
    .option('--data-dir <dir>', 'an empty or new directory where the server and devices keep their data, kept at exit (default: a temporary directory, removed at exit)')
    .option('--http-port <port>', 'dashboard and REST port (0 = any free port)', parseInteger, 0)
    .option('--seed <n>', 'seed for the data split, training and the simulated sites', parseInteger, 3)
    .option('--prometheus-url <url>', 'decide with this Prometheus instead of the builtin metric provider; it must scrape the demo server (--http-port), and analyses wait 30 s into each step for its scrapes')
    .option('--exit-when-done', 'exit once both rollouts are decided')
    .option('--summary-json <file>', 'write {rollouts: [{candidate, outcome (promoted or rolled_back), phase (Completed; Failed: the rollout failed it, reason says why; RolledBack: rolled back as an operator would), reason}]} to this file')
    .action(async (flags: DemoFlags) => {
      if (!Object.hasOwn(SHIPPED_DATASETS, flags.dataset)) {
        throw new UserError(`--dataset: unknown data set "${flags.dataset}" (choose ${Object.keys(SHIPPED_DATASETS).join(', ')})`);
      }
      if (flags.devices < 8 || flags.devices > 500) throw new UserError('--devices: must be between 8 and 500');
      if (flags.httpPort < 0 || flags.httpPort > 65535) throw new UserError('--http-port: must be 0..65535');
      if (flags.seed < 0 || flags.seed > MAX_SEED) throw new UserError(`--seed: must be between 0 and ${MAX_SEED}`);
      if (flags.prometheusUrl !== undefined) await checkDemoPrometheus(flags.prometheusUrl, flags.httpPort);
      // Where the demo writes is checked before it runs: a bad path must not cost a whole demo.
      const chosenDataDir = flags.dataDir ? resolve(flags.dataDir) : undefined;
      const createdDataDir = chosenDataDir !== undefined && !existsSync(chosenDataDir);
      if (chosenDataDir) {
        await ensureWritableDirectory(chosenDataDir, '--data-dir');
        await assertEmptyDemoDirectory(chosenDataDir);
      }
      if (flags.summaryJson) {
        // (The file may be inside --data-dir, hence checked once that exists.)
        await assertWritableFile(flags.summaryJson, '--summary-json').catch(async (error: unknown) => {
          if (createdDataDir) await rmdir(chosenDataDir).catch(() => {});
          throw error;
        });
      }
      const dataDir =
        chosenDataDir ??
        (await mkdtemp(join(tmpdir(), 'fleetprune-demo-')).catch((error: unknown) => {
          // TMPDIR missing, a file or read-only: the user's to fix, or to go around.
          throw new UserError(`cannot make the demo's temporary directory in ${tmpdir()} (TMPDIR): ${errorMessage(error)}; set TMPDIR to a writable directory, or give --data-dir DIR`);
        }));
      const [{ newDemoAdminToken, runDemo }, { formatDemoSummary, summaryJson }, { createPhaseProgress }] = await Promise.all([
        import('../demo/demo-run.ts'),
        import('../demo/demo-summary.ts'),
        import('./progress.ts'),
      ]);
      const output = demoOutput((line) => process.stdout.write(`${line}\n`), createPhaseProgress);
      const { say } = output;
      // A temporary directory holds the admin token and every device's credentials: not left behind,
      // not even by a Ctrl-C during training or the rollouts, or by a closed stdout.
      const interrupts = handleDemoInterrupts(() => {
        output.stop();
        if (!chosenDataDir) removeWhileWritten(dataDir);
      });
      say(`fleetprune demo: data in ${dataDir}${chosenDataDir ? '' : ' (removed at exit; --data-dir DIR keeps it)'}`);
      // A kept server is looked at again with its admin token (it prints none at a later start):
      // kept beside its data, as readable as the devices' credentials there.
      const adminToken = newDemoAdminToken();
      if (chosenDataDir) await writeFile(join(dataDir, DEMO_TOKEN_FILE), `${adminToken}\n`, { mode: 0o600 });
      try {
        const started = performance.now();
        let result;
        try {
          result = await runDemo({
            dataset: flags.dataset as ShippedDatasetName,
            devices: flags.devices,
            dataDir,
            httpPort: flags.httpPort,
            prometheusUrl: flags.prometheusUrl,
            seed: flags.seed,
            adminToken,
            log: createLogger('demo', cliLogLevel()),
            say,
            onProgress: (_label, event) => output.progress(event),
          });
        } catch (error) {
          // A demo refused for its input (a port in use, …) leaves --data-dir as it found it, empty
          // or absent, so that the same command runs once the cause is fixed.
          if (chosenDataDir && error instanceof UserError) await emptyDemoDirectory(chosenDataDir, createdDataDir);
          throw error;
        } finally {
          output.stop();
        }
        // The server, broker and devices keep the process alive: they are closed whatever fails.
        try {
          say(await formatDemoSummary(result));
          say(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
          if (flags.summaryJson) {
            try {
              await writeFile(flags.summaryJson, `${JSON.stringify(summaryJson(result), null, 2)}\n`);
            } catch (error) {
              throw new UserError(`--summary-json: cannot write ${flags.summaryJson} (${errorMessage(error)})`, { cause: error });
            }
          }
          if (chosenDataDir) say(`its server's data is kept; it runs again with: ${rerunCommand(chosenDataDir)}`);
          // Only for a server that stays up: with --exit-when-done nothing listens there any more.
          if (!flags.exitWhenDone) {
            say(`dashboard: ${result.dashboardUrl}`);
            say(`admin token: ${result.adminToken}`);
            say('the fleet keeps running; press Ctrl-C to stop');
            await interrupts.stopRequested();
            // On stderr: the Ctrl-C that stops the demo stops a reader of its stdout too (`demo | tee log`),
            // and a write to that closed pipe would end the process before its orderly stop.
            process.stderr.write(`fleetprune demo: stopping the fleet${chosenDataDir ? '' : ' and removing its temporary data'}…\n`);
          }
        } finally {
          await result.close();
        }
      } finally {
        interrupts.dispose();
        if (!chosenDataDir) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
      }
    });
}

export interface DemoOutput {
  /** Prints a line on stdout, after ending the progress bars of a pruning run that is over. */
  say(line: string): void;
  /** Shows a pruning progress event (bars on a TTY), starting the display if needed. */
  progress(event: ProgressEvent): void;
  /** Ends the progress display: the bars stop redrawing, the cursor shows again. */
  stop(): void;
}

/**
 * The demo's terminal output. Its progress bars redraw the lines above the cursor for as long as
 * they run, so they end before the next line of the demo's story is printed: otherwise they
 * overwrite it (registered …) and hide the cursor until the demo stops.
 */
export function demoOutput(write: (line: string) => void, createProgress: () => PhaseProgress): DemoOutput {
  let progress: PhaseProgress | undefined;
  const stop = () => {
    progress?.stop();
    progress = undefined;
  };
  return {
    say: (line) => {
      stop();
      write(line);
    },
    progress: (event) => (progress ??= createProgress()).update(event),
    stop,
  };
}

/**
 * Removes `dir` at an interrupt, while the demo's own writers still run: its agents' and server's
 * file operations in libuv's thread pool and the training worker go on while this thread removes,
 * and one landing just after the removal brought the directory back (with a device's credentials
 * in it). So after each removal it waits a moment (the thread blocked, the others not) and removes
 * again what came back, a few times.
 */
function removeWhileWritten(dir: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // ENOTEMPTY still (a writer faster than the retries): the next round takes what is left.
    }
    Atomics.wait(pause, 0, 0, 50);
    if (!existsSync(dir)) return;
  }
}

export interface DemoInterrupts {
  /** Resolves at the first Ctrl-C (SIGINT) or SIGTERM once the demo is done: the fleet then stops. */
  stopRequested(): Promise<void>;
  dispose(): void;
}

/**
 * Ctrl-C (SIGINT) and SIGTERM during `fleetprune demo`. Once the demo is done and waits in
 * stopRequested(), the first signal stops the fleet in order. Before that (training, the
 * rollouts), or a second time while the fleet stops, a signal ends the process at once, as it
 * would without this handler, after `cleanUp`: it restores the terminal and removes the temporary
 * data directory, with its admin token and device credentials, which the command's own clean-up
 * would not reach. So does an exit that skips it (`fleetprune demo | head -1`, whose next write
 * ends the process; an uncaught failure).
 */
export function handleDemoInterrupts(cleanUp: () => void): DemoInterrupts {
  let waiting: (() => void) | undefined;
  const cleanUpOnce = () => {
    dispose();
    try {
      cleanUp();
    } catch {
      // (Ending the process matters more than a clean-up that failed.)
    }
  };
  const onSignal = (name: NodeJS.Signals) => {
    if (waiting) {
      const resolveStop = waiting;
      waiting = undefined;
      resolveStop();
      return;
    }
    cleanUpOnce();
    process.kill(process.pid, name);
  };
  const offSignals = onStopSignals(onSignal);
  const dispose = () => {
    offSignals();
    process.off('exit', cleanUpOnce);
  };
  process.on('exit', cleanUpOnce);
  return {
    stopRequested: () => new Promise<void>((resolveStop) => (waiting = resolveStop)),
    dispose,
  };
}
