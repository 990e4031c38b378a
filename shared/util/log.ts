import { pino, type Logger, type LevelWithSilent } from 'pino';
import { UserError } from './errors.ts';

export type { Logger };

/**
 * Structured JSON logs on stderr, so stdout stays free for command output.
 * FLEETPRUNE_LOG_LEVEL (or LOG_LEVEL) picks the level; `silent` turns logs off.
 */
export function createLogger(name: string, level?: LevelWithSilent): Logger {
  const chosen = level ?? envLogLevel() ?? 'info';
  return pino({ name, level: chosen, base: { name } }, stderrDestination());
}

/** Log lines kept while stderr cannot be written (a full disk under its file), written once it can; newer ones beyond are lost. */
const UNWRITTEN_LOG_BYTES = 1024 * 1024;

/**
 * stderr, written synchronously. A write that fails (ENOSPC: the disk holding the log file is
 * full; EIO) loses log lines, not the process: unhandled, the destination's 'error' ended a
 * server or an agent (exit 1, and again at every restart while the disk stayed full), so a device
 * stopped serving and could not roll back over its log. Lines are kept up to UNWRITTEN_LOG_BYTES
 * and written with the next line once stderr takes them again.
 */
function stderrDestination(): ReturnType<typeof pino.destination> {
  const destination = pino.destination({ fd: 2, sync: true, maxLength: UNWRITTEN_LOG_BYTES });
  destination.on('error', () => {});
  return destination;
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
