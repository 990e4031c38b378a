import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr, so stdout stays free for command output.
 * FLEETPRUNE_LOG_LEVEL (or LOG_LEVEL) picks the level; `silent` turns logs off.
 */
export function createLogger(name: string, level?: LevelWithSilent): Logger {
  const chosen = (level ?? process.env.FLEETPRUNE_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info') as LevelWithSilent;
  return pino({ name, level: chosen, base: { name } }, pino.destination({ fd: 2, sync: true }));
}

/** One-shot CLI commands log warnings and worse unless FLEETPRUNE_LOG_LEVEL asks for more. */
export function cliLogLevel(): LevelWithSilent {
  return (process.env.FLEETPRUNE_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'warn') as LevelWithSilent;
}
