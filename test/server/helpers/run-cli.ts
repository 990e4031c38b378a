import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/fleetprune.js ...args` from the repository root; with `timeoutMs`, one still running then is killed (code -1). */
export function runCli(args: string[], env: Record<string, string> = {}, options: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const limit = options.timeoutMs ? { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const } : {};
    execFile(process.execPath, ['bin/fleetprune.js', ...args], { cwd: REPO, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent', ...env }, ...limit }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
