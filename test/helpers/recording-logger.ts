import { pino, type Logger } from 'pino';

/** A logger that keeps what it logs (parsed JSON lines, info and up), for tests that check what a server or an agent says. */
export function recordingLogger(): { logger: Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, any>) });
  return { logger, lines };
}
