import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { isOneLineError, REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';

const SMALL = ['--data', shippedDatasetPath('iris'), '--label', 'species', '--layers', '1', '--units', '8', '--epochs', '2', '--epsilon', '0.5'];

/** A process id that is not running: a child that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

let dir: string;
let previous: string;
before(async (t) => {
  dir = await tempDir(t as never);
  previous = join(dir, 'prev');
  const made = await runCli(['prune', ...SMALL, '--out', previous]);
  assert.equal(made.code, 0, made.stderr);
});

test("--out a previous output's general/ (its pruned model's parent) is refused up front, and that output is kept", async () => {
  const before = await readFile(join(previous, 'general', 'manifest.json'), 'utf8');
  const result = await runCli(['prune', ...SMALL, '--out', join(previous, 'general')]);
  assert.equal(result.code, 2, result.stderr);
  assert.ok(isOneLineError(result.stderr), result.stderr);
  assert.match(result.stderr, new RegExp(`it is the general/ of the artifact in ${previous}`));
  assert.equal(await readFile(join(previous, 'general', 'manifest.json'), 'utf8'), before);
  // A directory merely named general elsewhere is fine.
  const elsewhere = await runCli(['prune', ...SMALL, '--out', join(dir, 'general')]);
  assert.equal(elsewhere.code, 0, elsewhere.stderr);
});

test('--out deeper inside an artifact (its general/, its tfjs/) is refused up front: the new directory made that artifact one that could not be written again', async () => {
  for (const inside of [join(previous, 'general', 'new'), join(previous, 'tfjs', 'x', 'y')]) {
    const result = await runCli(['prune', ...SMALL, '--out', inside]);
    assert.equal(result.code, 2, result.stderr);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    const holder = inside.includes('/general/') ? join(previous, 'general') : previous;
    assert.ok(result.stderr.includes(`cannot write artifact to ${inside}: it is inside the artifact in ${holder}, and writing there would change that artifact; choose a directory outside it`), result.stderr);
  }
  assert.deepEqual((await readdir(join(previous, 'general'))).sort(), ['manifest.json', 'model.onnx', 'tfjs', 'training.json']);
});

test('a second prune to an --out another prune is writing is refused, naming that process; a lock left by a killed run is taken over', async () => {
  const out = join(dir, 'locked');
  // This test's own process stands for a running prune.
  await writeFile(`${out}.lock`, `${process.pid}\n`);
  const refused = await runCli(['prune', ...SMALL, '--out', out]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.ok(isOneLineError(refused.stderr), refused.stderr);
  assert.match(refused.stderr, new RegExp(`being written by another fleetprune prune \\(process ${process.pid}\\)`));
  assert.equal(existsSync(out), false, 'nothing written');
  assert.equal(await readFile(`${out}.lock`, 'utf8'), `${process.pid}\n`, 'the other run keeps its lock');

  await writeFile(`${out}.lock`, `${deadPid()}\n`);
  const taken = await runCli(['prune', ...SMALL, '--out', out]);
  assert.equal(taken.code, 0, taken.stderr);
  assert.ok(existsSync(join(out, 'manifest.json')));
  assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('locked')), ['locked'], 'the lock is removed at the end');
});

test('Ctrl-C while training ends the run at once, removes its lock (so the next run to that --out is not refused) and the missing parents of --out it created', async () => {
  const out = join(dir, 'made', 'for', 'interrupted');
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'prune', ...SMALL, '--epochs', '10000', '--units', '256', '--out', out], { cwd: REPO_ROOT, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' } });
  const exit = new Promise<string | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  let exited = false;
  void exit.then(() => (exited = true));
  while (!existsSync(`${out}.lock`) && !exited) await sleep(20);
  assert.equal(exited, false, 'the run took its lock and is training');
  await sleep(500);
  child.kill('SIGINT');
  assert.equal(await exit, 'SIGINT');
  assert.equal(existsSync(`${out}.lock`), false, 'the lock is gone');
  // The handler ends the process at once: the cleanup after a failed run never ran, and made/for/ stayed.
  assert.equal(existsSync(join(dir, 'made')), false, 'the directories the run created are gone');
});

test('--out . (the working directory) is refused up front: the rename into place left the shell in a deleted directory', async () => {
  const cwd = join(dir, 'cwd');
  await mkdir(cwd);
  const run = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/fleetprune.js'), 'prune', ...SMALL, '--out', '.'], { cwd, encoding: 'utf8', env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' } });
  assert.equal(run.status, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /^fleetprune: --out: .*cwd is the working directory, which the artifact would replace \(leaving this shell in a deleted directory\); give --out from outside it \(e\.g\. \.\.\/cwd\)\n$/);
  assert.deepEqual(await readdir(cwd), [], 'nothing is written');
});
