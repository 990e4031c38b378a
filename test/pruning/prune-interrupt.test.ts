import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { isOneLineError, REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';
import { isStagingSibling } from '../../server/pruning/output-layout.ts';

const IRIS = shippedDatasetPath('iris');

/**
 * Starts `fleetprune prune` and sends `signal` (SIGINT) as soon as the general model's staged sibling of
 * `out` appears (the export has begun). Resolves with the exit, and whether the signal was sent at all.
 */
function pruneInterruptedDuringExport(args: string[], out: string, signal: NodeJS.Signals = 'SIGINT', stage: 'general' | 'pruned' = 'general'): Promise<{ code: number | null; signal: string | null; stderr: string; sent: boolean }> {
  const parent = join(out, '..');
  const name = out.slice(parent.length + 1);
  const child = spawn(process.execPath, ['bin/fleetprune.js', 'prune', ...args, '--out', out], { cwd: REPO_ROOT, env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' } });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let exited = false;
  let sent = false;
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  void exit.then(() => (exited = true));
  const watch = (async () => {
    while (!exited && !sent) {
      const entries = await readdir(parent);
      // While the general model is staged and the pruned one not yet (the abort is checked before the
      // latter), or while the pruned one is staged (checked again before its move into place).
      const pruned = entries.some((entry) => entry.startsWith(`${name}.tmp-`));
      if (stage === 'pruned' ? pruned : entries.some((entry) => entry.startsWith(`${name}.general-`)) && !pruned) {
        child.kill(signal);
        sent = true;
      }
      await sleep(2);
    }
  })();
  return Promise.all([exit, watch]).then(([result]) => ({ ...result, stderr, sent }));
}

/** A temporary directory holding `out`, the output of an earlier run, and that output's manifest.json. */
async function previousOutput(t: TestContext): Promise<{ dir: string; out: string; manifest: string }> {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const previous = await runCli(['prune', '--data', IRIS, '--label', 'species', '--units', '8', '--epochs', '2', '--epsilon', '0.5', '--out', out]);
  assert.equal(previous.code, 0, previous.stderr);
  return { dir, out, manifest: await readFile(join(out, 'manifest.json'), 'utf8') };
}

test('Ctrl-C while the artifact is being written: exit 130, one line, no staged directories left, the previous output kept', async (t) => {
  const { dir, out, manifest } = await previousOutput(t);

  // A wide general model, so that writing it (and its staging) takes long enough to be interrupted.
  const args = ['--data', IRIS, '--label', 'species', '--units', '512', '--layers', '4', '--epochs', '2', '--epsilon', '0.5'];
  let run;
  // An attempt the signal missed ran to the end and replaced --out: the next one must keep that.
  let kept = manifest;
  for (let attempt = 0; attempt < 3; attempt++) {
    kept = await readFile(join(out, 'manifest.json'), 'utf8');
    run = await pruneInterruptedDuringExport(args, out);
    if (run.sent) break;
  }
  assert.ok(run?.sent, 'the export was caught in progress');
  // Without a handler, node died of the signal and left out.general-… and out.tmp-… behind.
  assert.deepEqual(await readdir(dir), ['out'], 'no staged siblings of --out');
  assert.equal(run.code, 130, `exit ${run.code} (signal ${run.signal}): ${run.stderr}`);
  const errors = run.stderr.split('\n').filter((line) => line.startsWith('fleetprune:')).join('\n');
  assert.ok(isOneLineError(errors), run.stderr);
  assert.match(errors, /^fleetprune: interrupted \(SIGINT\) while writing the artifact: stopped, .*out left as it was$/);
  assert.doesNotMatch(run.stderr, /\n\s+at /);
  assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), kept, 'the previous artifact is untouched');
  assert.deepEqual((await readdir(out)).sort(), ['general', 'manifest.json', 'model.onnx', 'report.json', 'tfjs', 'training.json']);
});

test('Ctrl-C while the pruned artifact is staged: it is not moved into place; exit 130, the previous output kept', async (t) => {
  const { dir, out, manifest } = await previousOutput(t);
  // ε 0.05 keeps most of a wide network: the pruned artifact takes a while to stage too.
  const args = ['--data', IRIS, '--label', 'species', '--units', '512', '--layers', '4', '--epochs', '2', '--epsilon', '0.05'];
  let run;
  // An attempt the signal missed (or reached after the move into place) replaced --out: the next
  // one must keep that.
  let kept = manifest;
  for (let attempt = 0; attempt < 5; attempt++) {
    kept = await readFile(join(out, 'manifest.json'), 'utf8');
    run = await pruneInterruptedDuringExport(args, out, 'SIGINT', 'pruned');
    if (run.sent && run.code === 130) break;
  }
  assert.ok(run?.sent, 'the pruned artifact was caught staged');
  // Before, the interrupt was not heard: exit 0, --out replaced.
  assert.equal(run.code, 130, `exit ${run.code} (signal ${run.signal}): ${run.stderr}`);
  assert.match(run.stderr, /fleetprune: interrupted \(SIGINT\) while writing the artifact: stopped, .*out left as it was\n/);
  assert.deepEqual(await readdir(dir), ['out'], 'no staged siblings of --out');
  assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), kept, 'the previous artifact is untouched');
});

test('a run killed while staging (SIGKILL) leaves its staging beside --out; the next run of that --out removes it, and nothing else', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const args = ['--data', IRIS, '--label', 'species', '--units', '512', '--layers', '4', '--epochs', '2', '--epsilon', '0.5'];
  let killed;
  for (let attempt = 0; attempt < 3; attempt++) {
    killed = await pruneInterruptedDuringExport(args, out, 'SIGKILL');
    if (killed.sent) break;
  }
  assert.ok(killed?.sent, 'the export was caught in progress');
  const left = (await readdir(dir)).filter((name) => name.startsWith('out.general-'));
  assert.ok(left.length > 0, 'the general model\'s staging is left');
  // Names a run never gives its staging: someone else's, kept.
  await mkdir(join(dir, 'out.general-notes'));
  await mkdir(join(dir, 'out.tmp-xyz'));

  const next = await runCli(['prune', '--data', IRIS, '--label', 'species', '--units', '8', '--epochs', '2', '--epsilon', '0.5', '--out', out]);
  assert.equal(next.code, 0, next.stderr);
  for (const name of left) assert.ok(next.stderr.includes(`note: removed ${join(dir, name)}, left by an earlier run of --out ${out} that did not finish`), next.stderr);
  assert.deepEqual((await readdir(dir)).sort(), ['out', 'out.general-notes', 'out.tmp-xyz']);
});

test('the staging directories a run gives --out are told apart from other names beside it', () => {
  const out = '/data/model.v2';
  for (const name of ['model.v2.tmp-0123456789ab', 'model.v2.general-4194304-1733350000000', 'model.v2.general-17-1733350000000.tmp-abcdefabcdef']) assert.ok(isStagingSibling(out, name), name);
  for (const name of ['model.v2', 'model.v2.lock', 'model.v2.lock.takeover', 'model.v2.tmp-0123456789AB', 'model.v2.tmp-0123', 'model.v2.general-notes', 'model.v2.general-1-2.tmp-x', 'model.v3.tmp-0123456789ab', 'xmodel.v2.tmp-0123456789ab']) {
    assert.ok(!isStagingSibling(out, name), name);
  }
});

test('Ctrl-C during training ends the run even when another SIGINT listener is registered (a library\'s): exit 130, nothing written', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  // A listener the signal's re-raise cannot get past: the default disposition never applies while one is there.
  const otherListener = "data:text/javascript,process.on('SIGINT',()=>{})";
  const child = spawn(process.execPath, ['--import', otherListener, 'bin/fleetprune.js', 'prune', '--data', IRIS, '--label', 'species', '--epochs', '400', '--epsilon', '0.5', '--out', out], {
    cwd: REPO_ROOT,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'silent' },
  });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  // Training has begun: the backend line is written just before it.
  while (!stderr.includes('backend:')) await sleep(20);
  await sleep(300);
  child.kill('SIGINT');
  assert.equal(await exit, 130, stderr);
  assert.deepEqual(await readdir(dir), [], 'nothing written, no staged siblings');
});
