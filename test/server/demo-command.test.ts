import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { demoOutput } from '../../server/cli/demo-command.ts';
import type { ProgressEvent } from '../../server/pruning/progress-events.ts';
import { REPO_ROOT, isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

/**
 * Starts `fleetprune demo` as `npm start` does and, once stdout shows `moment`, sends `signal`
 * (or, with 'close', stops reading its stdout, as `| head -1` does); returns how the process
 * ended and what is left in its TMPDIR.
 */
async function interruptDemo(tmp: string, moment: RegExp, signal: NodeJS.Signals | 'close') {
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'demo', '--dataset', 'iris', '--devices', '8'], {
    cwd: REPO_ROOT,
    env: { ...process.env, TMPDIR: tmp, FLEETPRUNE_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (!moment.test(stdout) || child.exitCode !== null || child.signalCode !== null) return;
    if (signal === 'close') child.stdout.destroy();
    else child.kill(signal);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // A demo that ignored the signal would run on: it is stopped for good after two minutes.
  const deadline = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, sig) => resolve({ code, signal: sig })));
  clearTimeout(deadline);
  // (tsx keeps its cache in TMPDIR too; the demo's own directories are fleetprune-demo-*.)
  const left = (await readdir(tmp)).filter((name) => name.startsWith('fleetprune-demo-'));
  return { ...ended, stdout, stderr, left };
}

test('fleetprune demo: Ctrl-C or SIGTERM before the demo is done, or a closed stdout, ends it and removes its temporary directory (admin token, device credentials)', async (t) => {
  const [beforeTraining, duringRollout, closedOutput] = await Promise.all([
    interruptDemo(await tempDir(t, 'fleetprune-demo-int-'), /^server up: /m, 'SIGINT'),
    interruptDemo(await tempDir(t, 'fleetprune-demo-term-'), /^rollout \S+: .* to the pilot devices/m, 'SIGTERM'),
    interruptDemo(await tempDir(t, 'fleetprune-demo-pipe-'), /^fleetprune demo: data in /m, 'close'),
  ]);
  for (const [run, ended] of [
    [beforeTraining, { code: null, signal: 'SIGINT' }],
    [duringRollout, { code: null, signal: 'SIGTERM' }],
    // As a shell reports `fleetprune demo | head -1` (see runCli).
    [closedOutput, { code: 141, signal: null }],
  ] as const) {
    assert.match(run.stdout, /^fleetprune demo: data in \S+fleetprune-demo-\S+ \(removed at exit/m);
    assert.doesNotMatch(run.stdout, /^done in /m, 'the demo was interrupted before its end');
    assert.deepEqual({ code: run.code, signal: run.signal }, ended, run.stderr);
    assert.deepEqual(run.left, [], `${ended.signal ?? 'a closed stdout'} left the demo's temporary directory behind`);
  }
});

test('fleetprune demo: the progress bars of the pruning end before the next line is printed, so they do not redraw over it', () => {
  const log: string[] = [];
  let created = 0;
  const output = demoOutput(
    (line) => log.push(`line ${line}`),
    () => {
      created += 1;
      return { update: (event) => log.push(`bar ${event.phase} ${event.done}/${event.total}`), stop: () => log.push('bars stopped') };
    },
  );
  const event = (done: number): ProgressEvent => ({ phase: 'train', done, total: 2 });
  output.say('training …');
  assert.equal(created, 0, 'no progress display before a pruning event');
  output.progress(event(1));
  output.progress(event(2));
  output.say('registered wine@1');
  output.say('12 devices enrolled');
  output.stop();
  assert.deepEqual(log, ['line training …', 'bar train 1/2', 'bar train 2/2', 'bars stopped', 'line registered wine@1', 'line 12 devices enrolled']);
  assert.equal(created, 1);
});

test('fleetprune demo --data-dir: a demo refused for a port in use leaves the directory as it found it, so the same command runs once the port is free', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = String((taken.address() as AddressInfo).port);
  const dir = await tempDir(t, 'fleetprune-demo-port-');
  const existing = join(dir, 'existing');
  await mkdir(existing);
  for (const dataDir of [join(dir, 'new'), existing]) {
    const result = await runCli(['demo', '--dataset', 'iris', '--devices', '8', '--exit-when-done', '--http-port', port, '--data-dir', dataDir], {}, { timeoutMs: 60_000 });
    assert.equal(result.code, 2, result.stderr);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, new RegExp(`^fleetprune: --http-port: cannot listen on 127\\.0\\.0\\.1:${port} \\(.*EADDRINUSE`));
  }
  assert.equal(existsSync(join(dir, 'new')), false, 'the directory the demo created is removed');
  assert.deepEqual(await readdir(existing), [], 'the empty directory given stays empty');
});
