import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { before, test, type TestContext } from 'node:test';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { generateSigningKeys } from '../../shared/artifact/signing-keys.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { commandSucceeds, mountTmpfs } from '../helpers/tmpfs.ts';

/**
 * `prune --out` a mount point (a Docker volume, the usual way to get a container's output out):
 * no rename can replace it (EBUSY), which failed the run at its very end, after the training, as
 * an "internal error". Its entries are replaced instead, with the guarantees of the rename: no
 * leftovers, the previous artifact replaced whole, and kept whole when the run fails.
 */

const SMALL = ['--data', shippedDatasetPath('iris'), '--label', 'species', '--layers', '1', '--units', '8', '--epochs', '5', '--epsilon', '0.5'];

let keys: string;
before(async (t) => {
  keys = await tempDir(t as never);
  await generateSigningKeys(keys);
});

function prune(out: string, extra: string[] = []) {
  return runCli(['prune', ...SMALL, '--sign-key', join(keys, 'signing.key'), '--out', out, ...extra]);
}

/** What `fleetprune verify` says of `out` (both artifacts: the pruned one and general/). */
async function verified(out: string): Promise<string> {
  const result = await runCli(['verify', out, '--public-key', join(keys, 'signing.pub')]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim().split('\n').length, 2, result.stdout);
  return result.stdout;
}

/** The artifact's entries only: no hidden staging left inside the volume, and none of the run's siblings (staging, lock) beside it. */
async function assertOnlyTheArtifact(out: string): Promise<void> {
  assert.deepEqual((await readdir(out)).sort(), ['general', 'manifest.json', 'model.onnx', 'report.json', 'tfjs', 'training.json']);
  assert.deepEqual((await readdir(dirname(out))).filter((name) => name.startsWith(basename(out))), [basename(out)]);
}

/** A fresh, empty tmpfs to use as --out; null (the test skipped) when this machine cannot mount one. */
async function volume(t: TestContext, name: string): Promise<string | null> {
  const mount = await mountTmpfs(t, name, '20m');
  if (!mount) t.skip('cannot mount a tmpfs here (needs root)');
  return mount;
}

test('prune --out an empty mount point writes the artifact, general/ and report.json into it', async (t) => {
  const out = await volume(t, 'prune-volume-fresh');
  if (!out) return;
  const run = await prune(out);
  assert.equal(run.code, 0, run.stderr);
  await assertOnlyTheArtifact(out);
  await verified(out);
  assert.equal(JSON.parse(await readFile(join(out, 'report.json'), 'utf8')).epsilon, 0.5);
});

test('a second prune --out the same mount point replaces the artifact in it, general/ and report.json included, and what a killed move left there', async (t) => {
  const out = await volume(t, 'prune-volume-again');
  if (!out) return;
  const first = await prune(out);
  assert.equal(first.code, 0, first.stderr);
  const firstIds = await verified(out);
  // What an earlier move in place that was killed left in the volume (its staged copy, what it had moved out) goes with the old artifact.
  await mkdir(join(out, '.fleetprune-incoming-0123456789ab', 'tfjs'), { recursive: true });
  await mkdir(join(out, '.fleetprune-outgoing-0123456789ab'));
  await writeFile(join(out, '.fleetprune-outgoing-0123456789ab', 'model.onnx'), 'older');

  const second = await prune(out, ['--seed', '7']);
  assert.equal(second.code, 0, second.stderr);
  await assertOnlyTheArtifact(out);
  const secondIds = await verified(out);
  const [prunedBefore, generalBefore] = firstIds.trim().split('\n');
  const [prunedAfter, generalAfter] = secondIds.trim().split('\n');
  assert.notEqual(prunedAfter, prunedBefore, 'the pruned artifact was replaced');
  assert.notEqual(generalAfter, generalBefore, 'general/ was replaced with it');
  assert.equal(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')).lineage.seed, 7);
});

test('a prune that cannot fit its artifact on the mounted --out fails with one line at exit 2 and leaves the artifact already there whole', async (t) => {
  const out = await volume(t, 'prune-volume-full');
  if (!out) return;
  const first = await prune(out);
  assert.equal(first.code, 0, first.stderr);
  const ids = await verified(out);
  const manifest = await readFile(join(out, 'manifest.json'), 'utf8');

  // No room left beside the artifact: the volume shrunk to what it uses.
  const { blocks, bfree, bsize } = await statfs(out);
  assert.ok(await commandSucceeds('mount', ['-o', `remount,size=${((blocks - bfree) * bsize) / 1024}k`, out]), 'shrunk the tmpfs');
  const failed = await prune(out, ['--seed', '7']);
  assert.equal(failed.code, 2, failed.stderr);
  const errorLines = failed.stderr.split('\n').filter((line) => !/^(\[\d+\/\d+\] |note: |backend: )/.test(line)).join('\n');
  assert.ok(isOneLineError(errorLines), failed.stderr);
  assert.match(errorLines, new RegExp(`^fleetprune: cannot (write|move) the artifact (to|into) ${out}: ENOSPC`));
  assert.doesNotMatch(failed.stderr, /internal error/);

  await assertOnlyTheArtifact(out);
  assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), manifest);
  assert.equal(await verified(out), ids);
});

test('prune --out a bind mount of a directory of the same file system (same device as its parent, as Docker volumes often are) writes, then replaces, its artifact', async (t) => {
  const out = join(await tempDir(t), 'volume');
  await mkdir(out);
  if (!(await commandSucceeds('mount', ['--bind', out, out]))) return t.skip('cannot bind-mount here (needs root)');
  deferCleanup(t, () => commandSucceeds('umount', ['-l', out]));
  const first = await prune(out);
  assert.equal(first.code, 0, first.stderr);
  await assertOnlyTheArtifact(out);
  const firstIds = await verified(out);
  const second = await prune(out, ['--seed', '7']);
  assert.equal(second.code, 0, second.stderr);
  await assertOnlyTheArtifact(out);
  assert.notEqual(await verified(out), firstIds);
});
