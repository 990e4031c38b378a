import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

/** A TCP port that was free a moment ago, for a process that must be told its port up front. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
