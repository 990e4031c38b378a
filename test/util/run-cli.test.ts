import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.ts';

/** Runs a tiny program through runCli in its own process: an action that fails outside any await. */
function runFailing(failure: 'throw' | 'reject'): Promise<{ code: number | null; stderr: string }> {
  const script = `
    import { Command } from 'commander';
    import { runCli } from './shared/cli/run-cli.ts';
    const program = new Command('demo').exitOverride().action(async () => {
      setTimeout(() => { ${failure === 'throw' ? "throw new Error('the broker socket failed')" : "void Promise.reject(new Error('a forgotten promise failed'))"}; }, 10);
      await new Promise(() => {}); // a long-running command
    });
    process.exitCode = await runCli(program, ['node', 'demo']);`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, timeout: 30_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr }),
    );
  });
}

test('a failure nothing caught ends a command with one line and exit code 1, no stack trace', async () => {
  const thrown = await runFailing('throw');
  assert.deepEqual(thrown, { code: 1, stderr: 'demo: internal error (uncaught exception): the broker socket failed\n' });
  const rejected = await runFailing('reject');
  assert.deepEqual(rejected, { code: 1, stderr: 'demo: internal error (unhandled rejection): a forgotten promise failed\n' });
});
