import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { isOneLineError, REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';

const IRIS = shippedDatasetPath('iris');

/**
 * Starts `fleetprune prune` and sends SIGINT as soon as the general model's staged sibling of
 * `out` appears (the export has begun). Resolves with the exit, and whether the signal was sent at all.
 */
function pruneInterruptedDuringExport(args: string[], out: string): Promise<{ code: number | null; signal: string | null; stderr: string; sent: boolean }> {
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
      // While the general model is staged and the pruned one not yet: the abort is checked before the latter.
      if (entries.some((entry) => entry.startsWith(`${name}.general-`)) && !entries.some((entry) => entry.startsWith(`${name}.tmp-`))) {
        child.kill('SIGINT');
        sent = true;
      }
      await sleep(2);
    }
  })();
  return Promise.all([exit, watch]).then(([result]) => ({ ...result, stderr, sent }));
}

test('Ctrl-C while the artifact is being written: exit 130, one line, no staged directories left, the previous output kept', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const previous = await runCli(['prune', '--data', IRIS, '--label', 'species', '--units', '8', '--epochs', '2', '--epsilon', '0.5', '--out', out]);
  assert.equal(previous.code, 0, previous.stderr);
  const manifest = await readFile(join(out, 'manifest.json'), 'utf8');

  // A wide general model, so that writing it (and its staging) takes long enough to be interrupted.
  const args = ['--data', IRIS, '--label', 'species', '--units', '512', '--layers', '4', '--epochs', '2', '--epsilon', '0.5'];
  let run;
  for (let attempt = 0; attempt < 3; attempt++) {
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
  assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), manifest, 'the previous artifact is untouched');
  assert.deepEqual((await readdir(out)).sort(), ['general', 'manifest.json', 'model.onnx', 'report.json', 'tfjs']);
});
