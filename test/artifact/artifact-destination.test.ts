import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertArtifactDestination } from '../../shared/artifact/artifact-destination.ts';
import { readManifest } from '../../shared/artifact/read-artifact.ts';
import { UserError } from '../../shared/util/errors.ts';
import { tempDir } from '../helpers/cli.ts';
import { writeSampleArtifact } from './fixtures.ts';

/** Every file under `dir` with its content, so a test can show that nothing was touched. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) files[join(entry.parentPath, entry.name).slice(dir.length + 1)] = await readFile(join(entry.parentPath, entry.name), 'utf8');
  }
  return files;
}

/** The rejection writeArtifact and the early check both give: a UserError naming the directory and the reason. */
function refusal(dir: string, reason: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof UserError, String(error));
    assert.ok(error.message.startsWith(`cannot write artifact to ${dir}: `), error.message);
    assert.match(error.message, reason);
    assert.ok(error.message.endsWith('; refusing to replace it'), error.message);
    assert.ok(!error.message.includes('\n'), 'one line');
    return true;
  };
}

test("a folder with someone else's manifest.json is not replaced: its files stay", async (t) => {
  const dir = join(await tempDir(t), 'victim');
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'manifest.json'), '{"name":"ext"}');
  await writeFile(join(dir, 'src', 'important.txt'), 'precious');
  const before = await snapshot(dir);
  await assert.rejects(assertArtifactDestination(dir), refusal(dir, /its manifest\.json is not a fleetprune artifact manifest \(formatVersion: /));
  await assert.rejects(writeSampleArtifact(dir), refusal(dir, /its manifest\.json is not a fleetprune artifact manifest/));
  assert.deepEqual(await snapshot(dir), before);

  await writeFile(join(dir, 'manifest.json'), '{ not json');
  await assert.rejects(writeSampleArtifact(dir), refusal(dir, /its manifest\.json is not a fleetprune artifact manifest \(.*JSON/));
  assert.equal(await readFile(join(dir, 'src', 'important.txt'), 'utf8'), 'precious');
  assert.deepEqual((await readdir(join(dir, '..'))).sort(), ['victim'], 'no staging directories are left behind');
});

test('an artifact that also holds other files is not replaced: nothing outside what prune writes is deleted', async (t) => {
  const root = await tempDir(t);
  const original = join(root, 'original');
  await writeSampleArtifact(original);
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['a file beside it', (dir) => writeFile(join(dir, 'notes.txt'), 'mine'), /it also holds "notes\.txt", which is not part of an artifact/],
    ['a directory beside it', async (dir) => mkdir(join(dir, 'src')).then(() => writeFile(join(dir, 'src', 'a.ts'), 'mine')), /it also holds "src"/],
    ['a file in tfjs/ the manifest does not list', (dir) => writeFile(join(dir, 'tfjs', 'notes.txt'), 'mine'), /it holds "tfjs\/notes\.txt", which its manifest\.json does not list/],
    ['a general/ that is not an artifact', (dir) => mkdir(join(dir, 'general')).then(() => writeFile(join(dir, 'general', 'notes.txt'), 'mine')), /general\/ is not an artifact: it has no manifest\.json/],
    ['a report.json that is a directory', (dir) => mkdir(join(dir, 'report.json')).then(() => writeFile(join(dir, 'report.json', 'x'), 'mine')), /it also holds "report\.json"/],
  ];
  for (const [name, addFiles, reason] of cases) {
    const dir = join(root, name.replace(/\W+/g, '-'));
    await cp(original, dir, { recursive: true });
    await addFiles(dir);
    const before = await snapshot(dir);
    await assert.rejects(writeSampleArtifact(dir), refusal(dir, reason), name);
    assert.deepEqual(await snapshot(dir), before, `${name}: untouched`);
  }
});

test("a previous prune output (artifact, report.json, general/ with its parent) is replaced whole", async (t) => {
  const dir = join(await tempDir(t), 'model');
  await writeSampleArtifact(dir);
  await writeSampleArtifact(join(dir, 'general'));
  await writeFile(join(dir, 'report.json'), '{}');
  await assertArtifactDestination(dir);
  const manifest = await writeSampleArtifact(dir);
  assert.deepEqual((await readdir(dir)).sort(), ['manifest.json', 'model.onnx', 'tfjs']);
  assert.deepEqual(await readManifest(dir), manifest);
});

test('what a killed move in place (a mount point) left in the artifact directory is replaced with the rest: the previous artifact beside its staged copy, or the swap half done with no manifest.json', async (t) => {
  const root = await tempDir(t);
  const original = join(root, 'original');
  await writeSampleArtifact(original);
  const tag = 'a1b2c3d4e5f6';

  // Killed while copying the staged artifact in: the previous artifact is whole, a partial copy beside it.
  const copying = join(root, 'copying');
  await cp(original, copying, { recursive: true });
  await mkdir(join(copying, `.fleetprune-incoming-${tag}`, 'tfjs'), { recursive: true });
  await writeFile(join(copying, `.fleetprune-incoming-${tag}`, 'model.onnx'), 'partial');
  await assertArtifactDestination(copying);
  let manifest = await writeSampleArtifact(copying);
  assert.deepEqual((await readdir(copying)).sort(), ['manifest.json', 'model.onnx', 'tfjs']);
  assert.deepEqual(await readManifest(copying), manifest);

  // Killed while swapping: the previous artifact moved out (manifest first), the new one's files in but its manifest.
  const swapping = join(root, 'swapping');
  await mkdir(join(swapping, `.fleetprune-incoming-${tag}`), { recursive: true });
  await cp(original, join(swapping, `.fleetprune-outgoing-${tag}`), { recursive: true });
  await cp(join(original, 'model.onnx'), join(swapping, 'model.onnx'));
  await cp(join(original, 'tfjs'), join(swapping, 'tfjs'), { recursive: true });
  await cp(join(original, 'manifest.json'), join(swapping, `.fleetprune-incoming-${tag}`, 'manifest.json'));
  await assertArtifactDestination(swapping);
  manifest = await writeSampleArtifact(swapping);
  assert.deepEqual((await readdir(swapping)).sort(), ['manifest.json', 'model.onnx', 'tfjs']);
  assert.deepEqual(await readManifest(swapping), manifest);

  // Only what the move names so, as a directory, with nothing but artifact files beside it.
  const leftover = `.fleetprune-outgoing-${tag}`;
  const cases: [string, (dir: string) => Promise<void>][] = [
    ['a leftover beside a file of the user', async (dir) => {
      await mkdir(join(dir, leftover), { recursive: true });
      await writeFile(join(dir, leftover, 'manifest.json'), '{}');
      await writeFile(join(dir, 'notes.txt'), 'mine');
    }],
    ['a file named as a leftover', async (dir) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, leftover), 'x');
      await cp(join(original, 'model.onnx'), join(dir, 'model.onnx'));
    }],
  ];
  for (const [name, make] of cases) {
    const dir = join(root, name.replace(/\W+/g, '-'));
    await make(dir);
    const before = await snapshot(dir);
    await assert.rejects(writeSampleArtifact(dir), refusal(dir, /it is a non-empty directory without manifest\.json/), name);
    assert.deepEqual(await snapshot(dir), before, `${name}: untouched`);
  }
  // Beside a manifest, a user's hidden directory of another name stays refused.
  const other = join(root, 'other');
  await cp(original, other, { recursive: true });
  await mkdir(join(other, '.fleetprune-cache'));
  await assert.rejects(writeSampleArtifact(other), refusal(other, /it also holds "\.fleetprune-cache", which is not part of an artifact/));
});
