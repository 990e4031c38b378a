import { onStopSignals } from '../../shared/cli/stop-signals.ts';
import { UserError } from '../../shared/util/errors.ts';

/** The exit code of a command stopped by Ctrl-C before it finished: 128 + SIGINT, as a shell reports it. */
export const INTERRUPTED_EXIT_CODE = 130;

export interface PruneInterrupt {
  /** Aborted by the first SIGINT/SIGTERM once the export has started. */
  signal: AbortSignal;
  /** From now on a signal aborts `signal` instead of ending the process at once. */
  exportStarted(): void;
  dispose(): void;
}

/**
 * Ctrl-C (SIGINT) and SIGTERM during `fleetprune prune`. Until the export starts nothing is on
 * disk, so the process ends at once, as it would without this handler (after `restoreTerminal`,
 * which shows the cursor the progress bars hid). Once the export has started, a signal aborts
 * `signal` instead: the pipeline stops before its next artifact and removes its staged files, so
 * no half-written siblings of --out are left and --out stays as it was (the pruned artifact's
 * final move into place, once begun, is finished). A second signal ends the process at once.
 */
export function handlePruneInterrupts(outDir: string, restoreTerminal: () => void): PruneInterrupt {
  const controller = new AbortController();
  let exporting = false;
  const onSignal = (name: NodeJS.Signals) => {
    if (exporting && !controller.signal.aborted) {
      const message = `interrupted (${name}) while writing the artifact: stopped, ${outDir} left as it was`;
      controller.abort(new UserError(message, { exitCode: INTERRUPTED_EXIT_CODE }));
      return;
    }
    dispose();
    restoreTerminal();
    process.kill(process.pid, name);
    // With no listener left the signal's default ends the process before kill() returns. Should
    // another listener of it be registered (a library's), the default never applies and the run
    // went on to the end: ended here then, as a shell reports Ctrl-C.
    setImmediate(() => process.exit(INTERRUPTED_EXIT_CODE));
  };
  const dispose = onStopSignals(onSignal);
  return {
    signal: controller.signal,
    exportStarted: () => {
      exporting = true;
    },
    dispose,
  };
}
