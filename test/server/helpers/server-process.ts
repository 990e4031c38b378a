import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { ADMIN_TOKEN } from './test-server.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  httpPort: number;
  grpcPort: number;
  baseUrl: string;
  /** The `listening http=P grpc=G ...` start-up line. */
  line: string;
  stderr(): string;
}

/** Spawns `node bin/fleetprune.js server` and waits for its `listening http=P grpc=G` line. */
export function spawnServer(t: TestContext, dataDir: string, extraArgs: string[] = [], env: Record<string, string | undefined> = {}): Promise<ServerProcess> {
  // The embedded broker on an ephemeral port, unless the server is to use an external one.
  const mqttPort = extraArgs.includes('--mqtt-url') ? [] : ['--mqtt-port', '0'];
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'server', '--data-dir', dataDir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', ...mqttPort, ...extraArgs], {
    cwd: REPO,
    env: { ...process.env, FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN, FLEETPRUNE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in time: ${stderr}`)), 30_000);
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const match = /^listening http=(\d+) grpc=(\d+)( [a-z]+=\d+)*$/m.exec(stdout);
      if (match) {
        clearTimeout(timer);
        const httpPort = Number(match[1]);
        resolve({ child, httpPort, grpcPort: Number(match[2]), baseUrl: `http://127.0.0.1:${httpPort}`, line: match[0], stderr: () => stderr });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr}`));
    });
  });
}

/** kill -9, and wait until the process is gone. */
export function killHard(server: ServerProcess): Promise<void> {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return resolve();
    server.child.once('exit', () => resolve());
    server.child.kill('SIGKILL');
  });
}
