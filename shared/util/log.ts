import { pino, type Logger, type LevelWithSilent } from 'pino';
import { UserError } from './errors.ts';

export type { Logger };

/**
 * Structured JSON logs on stderr, so stdout stays free for command output.
 * FLEETPRUNE_LOG_LEVEL (or LOG_LEVEL) picks the level; `silent` turns logs off.
 */
export function createLogger(name: string, level?: LevelWithSilent): Logger {
  const chosen = level ?? envLogLevel() ?? 'info';
  return pino({ name, level: chosen, base: { name } }, pino.destination({ fd: 2, sync: true }));
}

/** One-shot CLI commands log warnings and worse unless FLEETPRUNE_LOG_LEVEL asks for more. */
export function cliLogLevel(): LevelWithSilent {
  return envLogLevel() ?? 'warn';
}

const LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** FLEETPRUNE_LOG_LEVEL (or LOG_LEVEL), checked: a bad value names the variable. */
function envLogLevel(): LevelWithSilent | undefined {
  const [variable, value] = process.env.FLEETPRUNE_LOG_LEVEL
    ? ['FLEETPRUNE_LOG_LEVEL', process.env.FLEETPRUNE_LOG_LEVEL]
    : ['LOG_LEVEL', process.env.LOG_LEVEL];
  if (!value) return undefined;
  if (!LEVELS.includes(value as LevelWithSilent)) {
    throw new UserError(`${variable}: must be one of ${LEVELS.join(', ')}, not "${value}"`);
  }
  return value as LevelWithSilent;
}
