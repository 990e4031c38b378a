import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

const PRUNE = ['prune', '--data', shippedDatasetPath('iris'), '--label', 'species', '--units', '8', '--epochs', '2', '--epsilon', '0.5'];

test('--out a symbolic link: the artifact is written where it leads and the link is kept; a link leading nowhere is refused up front', async (t) => {
  const dir = await tempDir(t);
  // A link to an empty directory: the final rename hit the link (ENOTDIR) after the whole run.
  await mkdir(join(dir, 'empty'));
  await symlink('empty', join(dir, 'to-empty'));
  const first = await runCli([...PRUNE, '--out', join(dir, 'to-empty')]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(await readlink(join(dir, 'to-empty')), 'empty');
  assert.deepEqual((await readdir(join(dir, 'empty'))).sort(), ['general', 'manifest.json', 'model.onnx', 'report.json', 'tfjs', 'training.json']);

  // A link to a previous output (`current -> v3`): the link was replaced by a directory of its own.
  const before = await readFile(join(dir, 'empty', 'manifest.json'), 'utf8');
  const again = await runCli([...PRUNE, '--seed', '7', '--out', join(dir, 'to-empty')]);
  assert.equal(again.code, 0, again.stderr);
  assert.ok((await lstat(join(dir, 'to-empty'))).isSymbolicLink(), 'the link is still a link');
  assert.notEqual(await readFile(join(dir, 'empty', 'manifest.json'), 'utf8'), before, 'the directory it leads to holds the new artifact');
  assert.deepEqual((await readdir(dir)).sort(), ['empty', 'to-empty'], 'nothing else left beside it');

  await symlink('missing', join(dir, 'dangling'));
  const dangling = await runCli([...PRUNE, '--out', join(dir, 'dangling')]);
  assert.equal(dangling.code, 2, dangling.stderr);
  assert.ok(isOneLineError(dangling.stderr), dangling.stderr);
  assert.match(dangling.stderr, /^fleetprune: cannot write artifact to .*dangling: it is a symbolic link that leads nowhere/);
  assert.equal(await readlink(join(dir, 'dangling')), 'missing');
});
