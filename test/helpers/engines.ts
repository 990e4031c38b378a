import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import type { TestContext } from 'node:test';

/**
 * External engines (Mosquitto, PostgreSQL, Prometheus, Chromium) are real processes. A test that
 * needs one runs when it is present; when it is absent the test skips with a one-line reason,
 * except under CI (CI=true), where an absent engine fails the test.
 */
export function engineMissing(t: TestContext, engine: string, reason: string): void {
  const message = `${engine} is not available: ${reason}`;
  if (process.env.CI === 'true') throw new Error(`${message} (required under CI)`);
  t.skip(message);
}

export function findExecutable(names: readonly string[]): string | undefined {
  for (const name of names) {
    if (name.includes('/')) {
      if (existsSync(name)) return name;
      continue;
    }
    try {
      const found = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
      if (found) return found;
    } catch {
      // not on PATH
    }
  }
  return undefined;
}

export function tcpReachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The kernel's ephemeral ports (listen(0), outgoing connections) start here (Linux's default when unreadable). */
function ephemeralPortsFrom(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOWEST_PICKED_PORT + 1000 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Picked ports start here: above the well-known ones and the services a test machine runs. */
const LOWEST_PICKED_PORT = 20000;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port that was free a moment ago, for a process that must be told its port up front.
 *
 * Picked at random below the kernel's ephemeral range. A port the kernel had just handed out for
 * listen(0) (the old way) could be handed out again, to any other test's server or outgoing
 * connection, before its process bound it (seen twice in a day: a demo's and an acceptance
 * server's port taken, EADDRINUSE). Below that range only another picked port can collide.
 */
export async function freePort(): Promise<number> {
  const span = ephemeralPortsFrom() - LOWEST_PICKED_PORT;
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST_PICKED_PORT + randomInt(span);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free TCP port found from ${LOWEST_PICKED_PORT} to ${LOWEST_PICKED_PORT + span - 1}`);
}
