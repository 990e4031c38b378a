import assert from 'node:assert/strict';
import { readdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

const SMALL = ['--data', shippedDatasetPath('iris'), '--label', 'species', '--layers', '1', '--units', '8', '--epochs', '2', '--epsilon', '0.5'];

test("prune --out poetry beside the user's poetry.lock is refused before training, naming the file, which is kept", async (t) => {
  const dir = await realpath(await tempDir(t));
  const out = join(dir, 'poetry');
  const content = '# my lock file\n[[package]]\nname = "numpy"\n';
  await writeFile(`${out}.lock`, content);
  const result = await runCli(['prune', ...SMALL, '--out', out]);
  assert.equal(result.code, 2, result.stderr);
  assert.ok(isOneLineError(result.stderr), result.stderr);
  // The lock is taken before TensorFlow.js loads: no `backend:` line, nothing trained.
  assert.equal(result.stderr, `fleetprune: cannot lock --out ${out}: ${out}.lock is a file with other content, not a fleetprune lock (left as it is); remove it or choose another --out\n`);
  assert.equal(await readFile(`${out}.lock`, 'utf8'), content, 'the file is intact');
  assert.deepEqual(await readdir(dir), ['poetry.lock'], 'nothing written');
});
