import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deferCleanup } from './cleanup.ts';
import { runWarmCli } from './warm-cli.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Whether this test runs from the compiled tree that `npm test` builds (test/runner/test-tree.mjs),
 * where every TypeScript file has its JavaScript beside it, rather than from its source via tsx.
 */
export const COMPILED_TREE = import.meta.url.endsWith('.js');

/**
 * The node arguments that run the repository's TypeScript program `path` (relative to REPO_ROOT):
 * in the compiled tree, its bundle when npm test made one (test/runner/test-bundle.mjs) or else its
 * compiled JavaScript; otherwise the source through tsx's loader.
 */
export function nodeArgsFor(path: string): string[] {
  if (!COMPILED_TREE) return ['--import', 'tsx', path];
  const compiled = path.replace(/\.ts$/, '.js');
  const bundled = join('test', '.bundle', compiled);
  return [existsSync(join(REPO_ROOT, bundled)) ? bundled : compiled];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/fleetprune.js ...args` from the repository root, as a user would, and resolves
 * with its exit code and output. With `timeoutMs`, a command still running then is killed (code
 * -1): for commands that must not hang.
 *
 * A short client command (models, rollout, devices, tokens, blobs, jobs, assign, keys, verify;
 * see isWarmable) runs in this test process's warm runner (test/helpers/warm-cli.ts): the same
 * main() in a process already started, which saves the half CPU-second a process start costs,
 * about 100 CPU-seconds over `npm test`. `ownProcess` (and `timeoutMs`) always starts a process
 * of its own: for what only a process shows (that it exits at all, its signals).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, options: { timeoutMs?: number; ownProcess?: boolean } = {}): Promise<CliResult> {
  const fullEnv = { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent', ...env };
  if (!options.timeoutMs && !options.ownProcess) {
    const warm = runWarmCli(nodeArgsFor('test/helpers/warm-cli-runner.ts'), REPO_ROOT, args, fullEnv);
    if (warm) return warm;
  }
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/fleetprune.js', ...args],
      {
        cwd: REPO_ROOT,
        env: fullEnv,
        maxBuffer: 16 * 1024 * 1024,
        ...(options.timeoutMs ? { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const } : {}),
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Starts `node bin/fleetprune.js ...args` from the repository root as a process of its own, for a
 * test that acts while it runs (a watch, a job followed to its end): its output so far, and its
 * exit code and signal. Killed when the test ends.
 */
export function startCli(t: TestContext, args: string[]): { child: ChildProcess; output: { stdout: string; stderr: string }; exited: Promise<[number | null, NodeJS.Signals | null]> } {
  const child = spawn(process.execPath, ['bin/fleetprune.js', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  const output = { stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  return { child, output, exited: once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]> };
}

/**
 * Runs many `fleetprune` command lines (bad-input tables) in one process, through the CLI's own
 * main() (test/helpers/cli-batch-runner.ts), and resolves with each one's exit code and output, in
 * order. Much cheaper than a process per case; a case that crashed the process fails them all.
 */
export async function runCliBatch(cases: readonly { args: string[]; env?: Record<string, string> }[]): Promise<CliResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-cli-batch-'));
  try {
    const casesPath = join(dir, 'cases.json');
    const resultsPath = join(dir, 'results.json');
    await writeFile(casesPath, JSON.stringify(cases));
    const run = await new Promise<CliResult>((resolve) => {
      execFile(process.execPath, [...nodeArgsFor('test/helpers/cli-batch-runner.ts'), resultsPath, casesPath], { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
      );
    });
    if (run.code !== 0) throw new Error(`the CLI batch failed (exit ${run.code}): ${run.stderr.slice(-2000)}`);
    return JSON.parse(await readFile(resultsPath, 'utf8')) as CliResult[];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A temporary directory removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'fleetprune-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  deferCleanup(t, () => rm(dir, { recursive: true, force: true, maxRetries: 3 }));
  return dir;
}

/** Asserts the shape of a user-facing failure: one line, no stack trace. */
export function isOneLineError(stderr: string): boolean {
  const lines = stderr.trim().split('\n').filter((line) => line.trim() !== '');
  return lines.length === 1 && !/\n\s+at /.test(stderr) && !stderr.includes('node:internal');
}

/**
 * Runs `fn` over `items`, `limit` at a time, and returns the results in order: for independent
 * CLI runs, each of which spends most of its second loading modules on one core.
 */
export async function mapConcurrently<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
