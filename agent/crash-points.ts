/**
 * Fault injection for crash-consistency tests: when FLEETPRUNE_AGENT_CRASH_AT names this point,
 * the process kills itself with SIGKILL right here, exactly like `kill -9` at that instant.
 * Unset in normal operation, where this is a no-op.
 */
export type CrashPoint = 'command:taken' | 'install:before-rename' | 'activation:before-state' | 'activation:after-state' | 'benchmark:after-load';

export function crashPoint(point: CrashPoint): void {
  if (process.env.FLEETPRUNE_AGENT_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
