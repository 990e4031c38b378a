import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * A real agent process, for kill -9 tests: `node bin/fleetprune.js agent`, or with `bundle` the
 * standalone bundle that `npm run build:agent` writes (`node BUNDLE`).
 */
export class AgentProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    // 'close', not 'exit': an exit can come before the last of the child's output has been read.
    this.exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  }

  static async writeConfig(dir: string, config: AgentConfig): Promise<string> {
    const path = join(dir, 'agent.json');
    await writeFile(path, JSON.stringify(config, null, 2), { mode: 0o600 });
    return path;
  }

  /** `user`: the uid and gid to run as (a root test runs the agent as an ordinary user, whom file permissions bind). */
  static spawn(args: string[], env: Record<string, string> = {}, bundle?: string, user?: { uid: number; gid: number }): AgentProcess {
    const command = bundle ? [bundle] : ['bin/fleetprune.js', 'agent'];
    const child = spawn(process.execPath, [...command, '--http-port', '0', ...args], {
      cwd: REPO,
      env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...user,
    });
    return new AgentProcess(child);
  }

  /** The agent run by `wrapper` (a command that ends by running its arguments, e.g. `unshare -m sh -c '…; exec "$0" "$@"'`). */
  static spawnIn(wrapper: readonly string[], args: string[]): AgentProcess {
    const child = spawn(wrapper[0]!, [...wrapper.slice(1), process.execPath, 'bin/fleetprune.js', 'agent', '--http-port', '0', ...args], {
      cwd: REPO,
      env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new AgentProcess(child);
  }

  /**
   * Waits for the startup line and returns the HTTP port and the active model it reports: `active`
   * its version (or none), `activeRef` as the line gives it, MODEL@VERSION.
   */
  async ready(timeoutMs = 20_000): Promise<{ port: number; active: string; activeRef: string }> {
    await this.waitFor(() => /agent ready .*http=\d+/.test(this.stdout), timeoutMs, 'the agent ready line');
    const match = /agent ready device=\S+ http=(\d+) active=(\S+)/.exec(this.stdout)!;
    const activeRef = match[2]!;
    return { port: Number(match[1]), active: activeRef === 'none' ? 'none' : activeRef.slice(activeRef.lastIndexOf('@') + 1), activeRef };
  }

  /** Waits until a log line with this message appears on stderr. */
  waitForLog(message: string, timeoutMs = 20_000): Promise<void> {
    return this.waitFor(() => this.stderr.includes(`"msg":"${message}"`), timeoutMs, `log "${message}"`);
  }

  async waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    while (Date.now() < deadline) {
      if (condition()) return;
      if (exited) throw new Error(`the agent exited while waiting for ${what}: ${this.stderr.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`timed out waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`);
  }

  get pid(): number {
    return this.#child.pid!;
  }

  async kill9(): Promise<void> {
    this.#child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    await this.exited;
  }
}

export async function predictVia(port: number, rows: unknown[]): Promise<{ status: number; json: any }> {
  const response = await fetch(`http://127.0.0.1:${port}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ rows }) });
  return { status: response.status, json: await response.json() };
}
