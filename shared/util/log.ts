import { writeSync } from 'node:fs';
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

/** Log lines kept while stderr cannot be written (a full disk under its file); the oldest go first beyond it. */
const UNWRITTEN_LOG_BYTES = 1024 * 1024;

/**
 * stderr, written synchronously, one log line at a time, for every logger of the process (so their
 * lines keep their order). A write that fails (ENOSPC: the disk holding the log file is full;
 * EIO) loses nothing while the lines waiting fit in UNWRITTEN_LOG_BYTES, and never the process:
 * pino's own destination emitted an 'error' nobody heard, which ended a server or an agent (exit
 * 1, and again at every restart while the disk stayed full), so a device stopped serving and could
 * not roll back over its log. The lines waiting are written before the next one once stderr takes
 * them again, and at exit. A pipe that is full for now (EAGAIN) is waited on for up to a second
 * (pino's destination waited without end), then not again until a write goes through, so a reader
 * that stalled does not hold every log call.
 */
class StderrLog {
  #waiting: Buffer[] = [];
  #waitingBytes = 0;
  /** The first line waiting was written in part: it is never dropped (its rest would join another line). */
  #frontStarted = false;
  /** A full pipe was waited on in vain: not waited on again until a write goes through. */
  #stalled = false;

  write(line: string): void {
    const bytes = Buffer.from(line);
    this.#waiting.push(bytes);
    this.#waitingBytes += bytes.length;
    this.flushSync();
    // The oldest whole lines go first, never the newest line, nor a line already started.
    const first = this.#frontStarted ? 1 : 0;
    while (this.#waitingBytes > UNWRITTEN_LOG_BYTES && this.#waiting.length > first + 1) this.#waitingBytes -= this.#waiting.splice(first, 1)[0]!.length;
  }

  /** Writes what waits, as far as stderr takes it now. */
  flushSync(): void {
    let busyWaits = 0;
    while (this.#waiting.length > 0) {
      const bytes = this.#waiting[0]!;
      let written: number;
      try {
        written = writeSync(2, bytes);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN' && !this.#stalled) {
          if (busyWaits++ < EAGAIN_WAITS) {
            Atomics.wait(PAUSE, 0, 0, EAGAIN_WAIT_MS);
            continue;
          }
          this.#stalled = true;
        }
        return;
      }
      // Nothing taken, without an error: tried again with the next line, not in a loop now.
      if (written === 0) return;
      this.#stalled = false;
      this.#waitingBytes -= written;
      // Part of it went (a pipe's room, a disk's last blocks): the rest waits at the front.
      if (written < bytes.length) {
        this.#waiting[0] = bytes.subarray(written);
        this.#frontStarted = true;
      } else {
        this.#waiting.shift();
        this.#frontStarted = false;
      }
    }
  }
}

/** A full pipe is waited on this often, this long (a second in all), before its lines wait for later writes. */
const EAGAIN_WAITS = 100;
const EAGAIN_WAIT_MS = 10;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

let stderrLog: StderrLog | undefined;

function stderrDestination(): StderrLog {
  if (!stderrLog) {
    const log = (stderrLog = new StderrLog());
    process.once('exit', () => log.flushSync());
  }
  return stderrLog;
}

/** One-shot CLI commands log warnings and worse unless FLEETPRUNE_LOG_LEVEL asks for more. */
export function cliLogLevel(): LevelWithSilent {
  return envLogLevel() ?? 'warn';
}

const LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Other tools' spellings of the levels (Python's, syslog's), read as pino's. */
const LEVEL_SYNONYMS: Readonly<Record<string, LevelWithSilent>> = { warning: 'warn', critical: 'fatal', err: 'error', crit: 'fatal' };

let ignoredLogLevel: string | undefined;

/**
 * FLEETPRUNE_LOG_LEVEL (or LOG_LEVEL), in any case (`INFO`, `Warning`). A bad FLEETPRUNE_LOG_LEVEL
 * is refused naming it; a LOG_LEVEL fleetprune does not know (another tool's, set for a whole CI
 * job or container: `verbose`, `notice`) is ignored, said once on stderr, rather than stopping
 * every command.
 */
function envLogLevel(): LevelWithSilent | undefined {
  const own = process.env.FLEETPRUNE_LOG_LEVEL;
  const [variable, value] = own ? ['FLEETPRUNE_LOG_LEVEL', own] : ['LOG_LEVEL', process.env.LOG_LEVEL];
  if (!value) return undefined;
  const lower = value.trim().toLowerCase();
  const level = LEVEL_SYNONYMS[lower] ?? (LEVELS.includes(lower as LevelWithSilent) ? (lower as LevelWithSilent) : undefined);
  if (level) return level;
  if (own) throw new UserError(`${variable}: must be one of ${LEVELS.join(', ')} (or ${Object.keys(LEVEL_SYNONYMS).join(', ')}), not "${value}"`);
  if (ignoredLogLevel !== value) {
    ignoredLogLevel = value;
    process.stderr.write(`fleetprune: LOG_LEVEL "${value}" is not a level fleetprune knows (${LEVELS.join(', ')}, or ${Object.keys(LEVEL_SYNONYMS).join(', ')}); ignored (FLEETPRUNE_LOG_LEVEL sets fleetprune's own)\n`);
  }
  return undefined;
}
