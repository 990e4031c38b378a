import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLOSED_OUTPUT_EXIT_CODE } from '../../shared/cli/run-cli.ts';
import { REPO_ROOT } from '../helpers/cli.ts';

/**
 * Runs the CLI with its stdout read by nobody: the read end of the pipe is closed before the CLI
 * writes (it spends its first second loading modules), as when `| head -1` has already exited.
 */
function runWithClosedStdout(nodeArgs: string[], options: { stderrToo?: boolean } = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, { cwd: REPO_ROOT, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    if (options.stderrToo) child.stderr.destroy(); // `2>&1 | head -1`
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test('a CLI whose reader went away (| head) exits quietly with 141, not an internal error', async () => {
  const cases = [
    ['bin/fleetprune.js', '--help'],
    ['bin/fleetprune.js', 'keys', '--help'],
    // The standalone agent (the bundle's entry point) shares the CLI runner.
    ['--import', 'tsx', 'agent/main.ts', '--help'],
  ];
  for (const nodeArgs of cases) {
    const { code, stderr } = await runWithClosedStdout(nodeArgs);
    assert.equal(stderr, '', `${nodeArgs.join(' ')}: nothing on stderr`);
    assert.equal(code, CLOSED_OUTPUT_EXIT_CODE, nodeArgs.join(' '));
  }
});

test('prune whose reader went away before it wrote anything (its first line: the backend on stderr) exits with 141 and leaves none of the directories it created for --out', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-closed-prune-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'made', 'for', 'out');
  const { code } = await runWithClosedStdout(['bin/fleetprune.js', 'prune', '--data', join(REPO_ROOT, 'shared', 'datasets', 'iris.csv'), '--label', 'species', '--out', out, '--epochs', '1', '--epsilon', '0.5'], { stderrToo: true });
  assert.equal(code, CLOSED_OUTPUT_EXIT_CODE);
  assert.deepEqual(await readdir(dir), [], 'made/ and made/for/ removed');
});
