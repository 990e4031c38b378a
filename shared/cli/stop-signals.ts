/** The signals that ask a command to stop: Ctrl-C (SIGINT), a supervisor's SIGTERM, and SIGHUP (its terminal closed). */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const satisfies readonly NodeJS.Signals[];

/** Calls `handler` on STOP_SIGNALS, instead of the default (ending the process), until the returned function is called. */
export function onStopSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  return () => {
    for (const signal of STOP_SIGNALS) process.off(signal, handler);
  };
}
