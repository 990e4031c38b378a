import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test, type TestContext } from 'node:test';
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

test('output that cannot be written (stdout on a full disk) is one line saying so and exit code 1, not an internal error', async (t) => {
  const { access, constants } = await import('node:fs/promises');
  if (!(await access('/dev/full', constants.W_OK).then(() => true, () => false))) return t.skip('no writable /dev/full (it fails every write with ENOSPC)');
  const { spawn } = await import('node:child_process');
  const { openSync, closeSync } = await import('node:fs');
  const run = (args: string[], stdout: number | 'pipe') =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['bin/fleetprune.js', ...args], { cwd: REPO_ROOT, stdio: ['ignore', stdout, 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk) => (stderr += chunk));
      child.on('close', (code) => resolve({ code, stderr }));
    });
  const full = openSync('/dev/full', 'w');
  try {
    const help = await run(['--help'], full);
    assert.deepEqual([help.code, help.stderr], [1, 'fleetprune: cannot write the output to stdout (ENOSPC: no space left on device, write); what the command did before that stands\n']);
    // A subcommand's help: the same one line, whatever else the command loaded.
    const subcommand = await run(['rollout', 'validate', '--help'], full);
    assert.deepEqual([subcommand.code, subcommand.stderr], [1, help.stderr]);
    // A service's help is no service: it exits too (a running server goes on: the next test).
    for (const service of ['server', 'agent']) {
      const serviceHelp = await run([service, '--help'], full);
      assert.deepEqual([serviceHelp.code, serviceHelp.stderr], [1, help.stderr], service);
    }
  } finally {
    closeSync(full);
  }
});

/**
 * A `fleetprune server` on ephemeral ports whose stdout or stderr is /dev/full (every write fails
 * with ENOSPC, as on a full disk), or null where there is no writable /dev/full (the test skips).
 */
async function serverWithFullOutput(t: TestContext, which: 'stdout' | 'stderr', logLevel: string, adminToken: string) {
  const { access, constants, mkdtemp, rm } = await import('node:fs/promises');
  if (!(await access('/dev/full', constants.W_OK).then(() => true, () => false))) return null;
  const { spawn } = await import('node:child_process');
  const { openSync, closeSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), `fleetprune-full-${which}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const full = openSync('/dev/full', 'w');
  t.after(() => closeSync(full));
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'server', '--data-dir', dir, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], {
    cwd: REPO_ROOT,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: logLevel, FLEETPRUNE_ADMIN_TOKEN: adminToken },
    stdio: ['ignore', which === 'stdout' ? full : 'pipe', which === 'stderr' ? full : 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  return child;
}

test('a server whose stdout cannot be written (a full disk) says so once on stderr and goes on serving; it stops in order on SIGTERM', async (t) => {
  const child = await serverWithFullOutput(t, 'stdout', 'silent', 'fp_full_stdout_admin_token_0123456789');
  if (!child) return t.skip('no writable /dev/full (it fails every write with ENOSPC)');
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!stderr.includes('\n') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(stderr, 'fleetprune: cannot write the output to stdout (ENOSPC: no space left on device, write); going on without it\n');
  // Still running a second later: the failed ready line did not end it.
  const early = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('running'), 1000))]);
  assert.equal(early, 'running');
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
});

test('a server whose log cannot be written (stderr on a full disk) loses its log lines, not its life: it serves and stops in order', async (t) => {
  // Logging at debug: the start-up and every request write log lines, each failing with ENOSPC.
  const child = await serverWithFullOutput(t, 'stderr', 'debug', 'fp_full_stderr_admin_token_0123456789');
  if (!child) return t.skip('no writable /dev/full (it fails every write with ENOSPC)');
  let stdout = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!/listening http=\d+/.test(stdout) && Date.now() < deadline) {
    const early = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('running'), 100))]);
    assert.equal(early, 'running', `the server ended before it listened (stdout: ${stdout})`);
  }
  const port = Number(/listening http=(\d+)/.exec(stdout)![1]);
  for (let i = 0; i < 3; i++) {
    const answer = await fetch(`http://127.0.0.1:${port}/api/models`, { headers: { authorization: 'Bearer fp_full_stderr_admin_token_0123456789' } });
    assert.equal(answer.status, 200);
    await answer.arrayBuffer();
  }
  const early = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('running'), 500))]);
  assert.equal(early, 'running');
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('a usage error quoting an argument escapes its control characters rather than sending them to the terminal', async () => {
  const { runCli } = await import('../helpers/cli.ts');
  const refused = await runCli(['devices', 'enroll', '--id', 'dev-2', '--labels', 'site=a\x1b[2Jb', '--out', 'x.json']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^fleetprune: option '--labels <k=v,\.\.\.>' argument 'site=a\\x1b\[2Jb' is invalid\. .*\n$/);
  assert.doesNotMatch(refused.stderr, /\x1b/);
  // A text-direction override too: the line that explains it is refused must not read reversed.
  const reversed = await runCli(['devices', 'enroll', '--id', 'dev-2', '--labels', 'site=abc\u202eevil', '--out', 'x.json']);
  assert.equal(reversed.code, 2);
  assert.match(reversed.stderr, /argument 'site=abc\\u202eevil' is invalid\. /);
  assert.doesNotMatch(reversed.stderr, /\u202e/);
});

test('fleetprune help GROUP COMMAND shows that command\'s help, as fleetprune GROUP COMMAND --help does (it showed the group\'s)', async () => {
  const { runCliBatch } = await import('../helpers/cli.ts');
  const [viaHelp, viaFlag, group, typo] = await runCliBatch([{ args: ['help', 'rollout', 'start'] }, { args: ['rollout', 'start', '--help'] }, { args: ['help', 'rollout'] }, { args: ['help', 'rollout', 'strat'] }]);
  assert.equal(viaHelp!.code, 0, viaHelp!.stderr);
  assert.match(viaHelp!.stdout, /^Usage: fleetprune rollout start \[options\]/);
  assert.equal(viaHelp!.stdout, viaFlag!.stdout);
  assert.match(group!.stdout, /^Usage: fleetprune rollout \[options\] \[command\]/);
  // A command the group does not have: refused as `fleetprune rollout strat` is, where the group's help was shown with exit 0.
  assert.deepEqual([typo!.code, typo!.stdout, typo!.stderr], [2, '', "fleetprune: unknown command 'strat' (Did you mean start?) (run with --help for usage)\n"]);
  // A top-level command that does not exist, and `GROUP help COMMAND`: named too (the whole help was printed, exit 2, without naming it).
  const [top, inGroup] = await runCliBatch([{ args: ['help', 'nope'] }, { args: ['rollout', 'help', 'nope'] }]);
  assert.deepEqual([top!.code, top!.stdout, top!.stderr], [2, '', "fleetprune: unknown command 'nope' (run with --help for usage)\n"]);
  assert.deepEqual([inGroup!.code, inGroup!.stdout, inGroup!.stderr], [2, '', "fleetprune: unknown command 'nope' (run with --help for usage)\n"]);
  // Words after a command are its arguments, not commands: help is shown, the command is never run
  // (`help devices revoke d1` revoked d1 for a moment of this session).
  const helps = await runCliBatch([{ args: ['help', 'devices', 'revoke', 'd1'] }, { args: ['rollout', 'help', 'status', 'r1'] }, { args: ['help', 'rollout', 'status', '--token', 'x'] }, { args: ['help', 'keys', 'generate', '--out', 'nowhere'] }]);
  for (const run of helps) assert.deepEqual([run.code, /^Usage: fleetprune /.test(run.stdout), run.stderr], [0, true, ''], run.stdout + run.stderr);
});
