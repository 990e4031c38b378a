import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-io.ts';
import { loadTfjsNetwork } from '../../shared/artifact/tfjs-files.ts';
import { loadDatasetFile, readDataFile } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { forward } from '../../shared/model/dense-network.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

const IRIS = shippedDatasetPath('iris');
const SMALL = ['--units', '16', '--epochs', '25'];

test("prune --out refuses a folder that merely holds a manifest.json: exit 2, one line, its files kept", async (t) => {
  const victim = join(await tempDir(t), 'victim');
  await mkdir(join(victim, 'src'), { recursive: true });
  await writeFile(join(victim, 'manifest.json'), '{"name":"ext"}');
  await writeFile(join(victim, 'src', 'important.txt'), 'precious');
  const run = await runCli(['prune', '--data', IRIS, '--label', 'species', '--epsilon', '0.3', ...SMALL, '--out', victim]);
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /cannot write artifact to .*victim: its manifest\.json is not a fleetprune artifact manifest/);
  assert.deepEqual((await readdir(victim)).sort(), ['manifest.json', 'src']);
  assert.equal(await readFile(join(victim, 'src', 'important.txt'), 'utf8'), 'precious');
  assert.equal(await readFile(join(victim, 'manifest.json'), 'utf8'), '{"name":"ext"}');
});

test('a feature float32 cannot hold (a timestamp): trained on what devices feed, model.onnx matches, and a warning names it', async (t) => {
  const dir = await tempDir(t);
  // Iris with a timestamp column 1.6e9 + 7·row: float32 rounds it in steps of 128, 0.2 of its spread.
  const [header, ...rows] = (await readFile(IRIS, 'utf8')).trim().split('\n');
  const csv = join(dir, 'iris-ts.csv');
  await writeFile(csv, [`ts,${header}`, ...rows.map((row, i) => `${1_600_000_000 + 7 * i},${row}`)].join('\n') + '\n');
  const out = join(dir, 'model');
  const run = await runCli(['prune', '--data', csv, '--label', 'species', '--epsilon', '0.3', '--seed', '1', ...SMALL, '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const warning = /^feature "ts" is too far from zero for its spread to survive float32, .*subtract an offset/;
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.ok(report.warnings.some((w: string) => warning.test(w)), JSON.stringify(report.warnings));
  assert.ok(run.stdout.split('\n').some((line) => warning.test(line.replace(/^warning: /, ''))), run.stdout);

  // What training and scoring saw (the loaded rows, computed in float64) and what a device gets
  // from model.onnx on the same rows as float32 agree: the scores describe the shipped model.
  const data = loadDatasetFile(csv, { label: 'species' });
  const network = await loadTfjsNetwork(join(out, 'tfjs'));
  const session = await ort.InferenceSession.create(await readFile(join(out, 'model.onnx')));
  const width = data.featureNames.length;
  const onnx = (await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', Float32Array.from(data.x.flat()), [data.x.length, width]) }))[ONNX_OUTPUT]!.data as Float32Array;
  await session.release();
  const trained = forward(network, data.x).flat();
  const worst = Math.max(...trained.map((value, i) => Math.abs(value - onnx[i]!)));
  assert.ok(worst <= 1e-4, `max |trained − onnx| = ${worst}`);
});

test('a data file larger than the process can parse is refused before it is read: one line, exit 2, naming the file, its size and what to do (it was an internal error, or a V8 out-of-memory abort)', async (t) => {
  const dir = await tempDir(t);
  // Longer than node's longest string: a sparse file, so nothing is written to disk.
  const huge = join(dir, 'huge.csv');
  await writeFile(huge, 'a,label\n');
  await truncate(huge, 600_000_000);
  // Fits a string, but parsing it (about 1 GB for 2.6 million short rows) takes more than a 256 MiB heap.
  const rows = Array.from({ length: 2_600_000 }, (_, i) => `${i % 97},${i % 89},${i % 3}`);
  const large = join(dir, 'large.csv');
  await writeFile(large, ['a,b,label', ...rows].join('\n') + '\n');
  for (const [file, env, message] of [
    [huge, {}, /^fleetprune: cannot read data file .*huge\.csv: it is 600 MB, more than node reads as one text \(537 MB\); use a sample of its rows$/m],
    [large, { NODE_OPTIONS: '--max-old-space-size=256' }, /^fleetprune: cannot read data file .*large\.csv: it is \d+ MB, and parsing it takes about \d+ MB of memory, more than node may use here \(\d+ MB in all\): give it more \(NODE_OPTIONS=--max-old-space-size=\d+\) or use a sample of its rows$/m],
  ] as const) {
    const out = join(dir, 'out');
    const run = await runCli(['prune', '--data', file, '--label', 'label', '--out', out], env, { ownProcess: true });
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr, message);
  }
  // The same file with the heap node has by default here (over 2 GB on any machine tests run on): read.
  assert.equal(readDataFile(large).length, (await stat(large)).size);
});

test('a data file whose name keeps nothing of a model name (ü.csv, 数据.csv) is refused before training, asking for --name; with --name it is pruned', async (t) => {
  const dir = await tempDir(t);
  const iris = await readFile(shippedDatasetPath('iris'));
  for (const file of ['ü.csv', '数据.csv']) {
    const data = join(dir, file);
    await writeFile(data, iris);
    const out = join(dir, `out-${file}`);
    // Both were the model "_" or "__", one's versions mixed with the other's.
    const refused = await runCli(['prune', '--data', data, '--label', 'species', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.5', '--out', out]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    assert.ok(refused.stderr.includes(`fleetprune: --name: the data file's name "${file}" gives no model name (1-64 characters of A-Z a-z 0-9 . _ -); give one with --name\n`), refused.stderr);
  }
  const named = await runCli(['prune', '--data', join(dir, 'ü.csv'), '--label', 'species', '--name', 'uber', '--units', '4', '--layers', '1', '--epochs', '1', '--epsilon', '0.5', '--out', join(dir, 'named')]);
  assert.equal(named.code, 0, named.stderr);
  assert.equal(JSON.parse(await readFile(join(dir, 'named', 'manifest.json'), 'utf8')).name, 'uber');
});
