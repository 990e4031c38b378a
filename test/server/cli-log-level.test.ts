import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { refuseUnexpandedHome } from '../../shared/cli/run-cli.ts';
import { REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';

test('a bad FLEETPRUNE_LOG_LEVEL is a one-line usage error for every command, also those that do not log, and nothing is done', async (t) => {
  const dir = await tempDir(t);
  const result = await runCli(['keys', 'generate', '--out', join(dir, 'keys')], { FLEETPRUNE_LOG_LEVEL: 'bogus' });
  assert.equal(result.code, 2);
  assert.equal(result.stderr, 'fleetprune: FLEETPRUNE_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent (or warning, critical, err, crit), not "bogus"\n');
  assert.deepEqual(await readdir(dir), [], 'no keys were written');
});

test("LOG_LEVEL, which other tools share, is read in any case and with their spellings (INFO, WARNING); one fleetprune does not know is ignored, said once, not a refusal of every command", async (t) => {
  const dir = await tempDir(t);
  for (const value of ['INFO', 'Warning', 'DEBUG']) {
    const result = await runCli(['--version'], { FLEETPRUNE_LOG_LEVEL: '', LOG_LEVEL: value });
    assert.deepEqual([result.code, result.stderr], [0, ''], value);
  }
  const other = await runCli(['keys', 'generate', '--out', join(dir, 'keys')], { FLEETPRUNE_LOG_LEVEL: '', LOG_LEVEL: 'verbose' });
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stderr, /^fleetprune: LOG_LEVEL "verbose" is not a level fleetprune knows \(fatal, error, warn, info, debug, trace, silent, or warning, critical, err, crit\); ignored \(FLEETPRUNE_LOG_LEVEL sets fleetprune's own\)\n/);
  assert.deepEqual(await readdir(dir), ['keys'], 'the keys were written');
  // FLEETPRUNE_LOG_LEVEL, fleetprune's own, in any case too.
  assert.equal((await runCli(['--version'], { FLEETPRUNE_LOG_LEVEL: 'WARN' })).code, 0);
});

// `--out=~/keys` (or a quoted "~/keys") reaches the CLI unexpanded: it made a directory named ~ in
// the working directory, printed as if it were the home directory.
test('a path given as ~/… that the shell did not expand is refused in one line, and nothing is written', async (t) => {
  const dir = await tempDir(t);
  const cases: [string[], string][] = [
    [['keys', 'generate', '--out=~/fp-keys'], 'fleetprune: --out: "~/fp-keys" starts with ~, which the shell did not expand (it does so only at the start of a word): write $HOME/fp-keys, or --out ~/fp-keys with a space\n'],
    [['verify', '~/artifact'], 'fleetprune: argument: "~/artifact" starts with ~, which the shell did not expand (it does so only at the start of a word): write $HOME/artifact\n'],
  ];
  for (const [args, message] of cases) {
    const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [join(REPO_ROOT, 'bin', 'fleetprune.js'), ...args], { cwd: dir }, (error, _stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stderr })),
    );
    assert.deepEqual([result.code, result.stderr], [2, message], args.join(' '));
  }
  assert.deepEqual(await readdir(dir), [], 'no ~ directory');
  // A ~ inside a value is no home directory: left alone.
  assert.equal(refusedHome(['node', 'fleetprune', 'rollout', 'abort', 'ro-1', '--reason', 'see ~/notes']), null);
  // Free text that starts with ~ is no path either; a quoted path after a path option is.
  assert.equal(refusedHome(['node', 'fleetprune', 'rollout', 'pause', 'ro-1', '--reason', '~/ops: bad batch']), null);
  assert.equal(refusedHome(['node', 'fleetprune', 'tokens', 'create', '--label', '~']), null);
  assert.equal(refusedHome(['node', 'fleetprune', 'tokens', 'create', '--label=~']), null);
  assert.match(refusedHome(['node', 'fleetprune', 'agent', '--data-dir', '~/agent']) ?? '', /^--data-dir: "~\/agent" starts with ~, which the shell did not expand \(it does so only at the start of a word\): write \$HOME\/agent$/);
});

function refusedHome(argv: string[]): string | null {
  try {
    refuseUnexpandedHome(argv);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}
