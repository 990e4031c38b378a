/** The signals that ask a command to stop: Ctrl-C (SIGINT) and a supervisor's SIGTERM. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const satisfies readonly NodeJS.Signals[];

/** Calls `handler` on SIGINT and SIGTERM, instead of the default (ending the process), until the returned function is called. */
export function onStopSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  return () => {
    for (const signal of STOP_SIGNALS) process.off(signal, handler);
  };
}
