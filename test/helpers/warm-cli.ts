import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { WARM_CLI_MARK, type WarmCliCase } from './warm-cli-protocol.ts';

export interface WarmCliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The commands a warm runner may run: short client commands, which do their work over gRPC or on
 * files and end. Never the long-running ones (server, agent, demo), nor prune (a lock holding its
 * process id, Ctrl-C handling), nor the ones that follow a job or rollout until it ends (watch,
 * `rollout start --watch`, `jobs prune` without --detach): those run in a process of their own.
 */
const WARM_COMMANDS = new Set(['models', 'rollout', 'devices', 'tokens', 'blobs', 'jobs', 'assign', 'keys', 'verify']);

export function isWarmable(args: readonly string[]): boolean {
  if (!WARM_COMMANDS.has(args[0] ?? '')) return false;
  if (args[1] === 'watch' || args.includes('--watch')) return false;
  if (args[0] === 'jobs' && args[1] === 'prune' && !args.includes('--detach')) return false;
  return true;
}

/**
 * One runner process (test/helpers/warm-cli-runner.ts) per test process, started at its first
 * case, running one case at a time. It holds no reference on the event loop while idle, so the
 * test process ends as it would without it, and the runner follows (its IPC channel closes).
 */
class WarmCli {
  readonly #child: ChildProcess;
  readonly #streams: Readable[];
  #stdout = '';
  #stderr = '';
  #nextId = 1;
  #pending: { id: number; resolve: (result: WarmCliResult) => void } | undefined;
  #closed = false;

  constructor(nodeArgs: string[], cwd: string) {
    this.#child = spawn(process.execPath, nodeArgs, { cwd, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: process.env });
    this.#streams = [this.#child.stdout!, this.#child.stderr!];
    this.#child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stdout += chunk;
      this.#settle();
    });
    this.#child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stderr += chunk;
      this.#settle();
    });
    this.#child.on('error', () => this.#end(-1));
    // After its streams closed: every byte it wrote has been read.
    this.#child.on('close', (code) => this.#end(code ?? -1));
    this.#idle();
  }

  get busy(): boolean {
    return this.#pending !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  run(args: readonly string[], env: Record<string, string>): Promise<WarmCliResult> {
    if (this.#pending || this.#closed) throw new Error('the warm CLI runner is busy or gone');
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending = { id, resolve };
      this.#child.ref();
      (this.#child.channel as { ref?: () => void } | undefined)?.ref?.();
      for (const stream of this.#streams) (stream as Readable & { ref?: () => void }).ref?.();
      this.#child.send({ id, args: [...args], env } satisfies WarmCliCase);
    });
  }

  /** Resolves the pending case once both of its markers have been read. */
  #settle(): void {
    const pending = this.#pending;
    if (!pending) return;
    const stdoutMark = new RegExp(`${WARM_CLI_MARK}${pending.id} (-?\\d+)\\n`).exec(this.#stdout);
    const stderrMark = `${WARM_CLI_MARK}${pending.id}\n`;
    const stderrAt = this.#stderr.indexOf(stderrMark);
    if (!stdoutMark || stderrAt < 0) return;
    const result = { code: Number(stdoutMark[1]), stdout: this.#stdout.slice(0, stdoutMark.index), stderr: this.#stderr.slice(0, stderrAt) };
    this.#stdout = this.#stdout.slice(stdoutMark.index + stdoutMark[0].length);
    this.#stderr = this.#stderr.slice(stderrAt + stderrMark.length);
    this.#pending = undefined;
    this.#idle();
    pending.resolve(result);
  }

  /** The runner ended: a pending case ends with it, as a process of its own would have. */
  #end(code: number): void {
    if (this.#closed) return;
    this.#closed = true;
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.resolve({ code, stdout: this.#stdout, stderr: this.#stderr });
  }

  #idle(): void {
    this.#child.unref();
    (this.#child.channel as { unref?: () => void } | undefined)?.unref?.();
    for (const stream of this.#streams) (stream as Readable & { unref?: () => void }).unref?.();
  }
}

let runner: WarmCli | undefined;
let warmRuns = 0;

/** How many cases this test process's warm runners were given (its own test checks it is used). */
export function warmCliRuns(): number {
  return warmRuns;
}

/**
 * Runs a command line in this test process's warm runner, or returns undefined when it cannot
 * (a command isWarmable refuses, or the runner is busy with another case: commands started
 * together run in processes of their own, at the same time, as a race test needs).
 */
export function runWarmCli(nodeArgs: string[], cwd: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<WarmCliResult> | undefined {
  if (!isWarmable(args)) return undefined;
  if (!runner || runner.closed) runner = new WarmCli(nodeArgs, cwd);
  if (runner.busy) return undefined;
  const defined = Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  warmRuns++;
  return runner.run(args, defined);
}
