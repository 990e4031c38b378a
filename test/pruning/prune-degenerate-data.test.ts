import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseDataset } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { UserError } from '../../shared/util/errors.ts';
import { assertLearnable, fitScaling, unstandardizableWarnings } from '../../server/pruning/standardization.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';

// Data that parses but used to break the model or its scores: values near the float32 limit,
// and spreads so small they were taken for constants.

const FAST = ['--units', '8', '--epochs', '3', '--epsilon', '0.5'];

/** A seeded stream of numbers in [0, 1). */
function uniform(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

test('a feature whose values span more than float32 holds is refused before training: one line, exit 2, nothing written', async (t) => {
  // Before: model.onnx subtracted the column's mean (3.4e38) from -3.4e38 in float32 and answered NaN for that row.
  const rows = Array.from({ length: 200 }, (_, i) => `${i % 7},${i === 100 ? '-3.4e38' : '3.4e38'},${i % 2 ? 'x' : 'y'}`);
  const text = ['a,c,label', ...rows].join('\n') + '\n';
  assert.throws(
    () => parseDataset(text, { label: 'label' }),
    (error: unknown) => error instanceof UserError && /^data: column "c" spans from -3\.4e\+38 to 3\.4e\+38, further apart than float32 holds/.test(error.message),
  );
  // Half that span is fine: no value is more than float32's limit from the mean.
  assert.equal(parseDataset(text.replaceAll('3.4e38', '1.7e38'), { label: 'label' }).x.length, 200);
  // A model's own columns read for scoring are not training data: not refused here.
  assert.equal(parseDataset(text, { label: 'label', features: ['a', 'c'] }).x.length, 200);

  const dir = await tempDir(t);
  const csv = join(dir, 'wide-span.csv');
  await writeFile(csv, text);
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 'label', ...FAST, '--out', out]);
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /wide-span\.csv: column "c" spans from .* scale the column down/);
  await assert.rejects(stat(out), 'nothing is written');
  assert.deepEqual(await readdir(dir), ['wide-span.csv'], 'no lock or staging directory is left behind');
});

test('a regression label near the float32 limit fails the run clearly instead of writing a model.onnx that answers Infinity', async (t) => {
  const random = uniform(7);
  const rows = Array.from({ length: 120 }, () => {
    const a = random() * 2 - 1;
    const b = random() * 2 - 1;
    return `${a},${b},${a + b > 0 ? '3e38' : '-3e38'}`;
  });
  const dir = await tempDir(t);
  const csv = join(dir, 'huge-target.csv');
  const text = ['a,b,t', ...rows].join('\n') + '\n';
  await writeFile(csv, text);
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 't', '--task', 'regression', ...FAST, '--out', out]);
  assert.equal(run.code, 2, run.stderr);
  // Found once the general model is trained: after the backend, the unsigned note and the progress lines, one error line.
  const errorLines = run.stderr.split('\n').filter((line) => !/^(\[\d+\/\d+\] |note: |backend: )/.test(line)).join('\n');
  assert.ok(isOneLineError(errorLines), run.stderr);
  assert.match(run.stderr, /the label "t" reaches ±3\.0e\+38, so near the float32 limit \(±3\.4e38\) that the general model's predictions overflow it on \d+ of 120 rows/);
  await assert.rejects(stat(out), 'nothing is written');
  assert.equal(await readFile(csv, 'utf8'), text, 'the data is unchanged');
  assert.deepEqual(await readdir(dir), ['huge-target.csv'], 'no lock or staging directory is left behind');
});

test('a spread too small for the old 1e-12 floor is the scale, not taken for a constant; real constants still get scale 1', () => {
  const x = Array.from({ length: 50 }, (_, i) => [
    ((i % 10) - 4.5) * 1e-20, // a real spread around 3e-20 (SI units)
    0.1 * 3, // a constant, whose float64 mean is not exactly itself
    5,
    i, // an ordinary column: unchanged
    ((i % 3) - 1) * 1e-35, // below the tiny-scale floor: counts as constant
  ]);
  const y = Array.from({ length: 50 }, (_, i) => (i % 10) * 1e-30 + 1e-29);
  const scaling = fitScaling(x, y, 'regression');
  const std = (values: number[]) => {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  };
  assert.ok(Math.abs(scaling.inputScale[0]! / std(x.map((row) => row[0]!)) - 1) < 1e-6, `tiny column scale ${scaling.inputScale[0]}`);
  assert.equal(scaling.inputScale[1], 1);
  assert.equal(scaling.inputScale[2], 1);
  assert.equal(scaling.inputScale[3], Math.fround(std(x.map((row) => row[3]!))));
  assert.equal(scaling.inputScale[4], 1);
  assert.ok(Math.abs(scaling.target!.scale / std(y) - 1) < 1e-12, `target scale ${scaling.target!.scale}`);
});

test('a regression label in tiny units (around 1e-30) is learned: R² is a sane number, not -1e58', async (t) => {
  const random = uniform(11);
  const rows = Array.from({ length: 120 }, () => {
    const a = random() * 2 - 1;
    const b = random() * 2 - 1;
    return `${a},${b},${(a + 2 * b) * 1e-30}`;
  });
  const dir = await tempDir(t);
  const csv = join(dir, 'tiny-target.csv');
  await writeFile(csv, ['a,b,t', ...rows].join('\n') + '\n');
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 't', '--task', 'regression', '--units', '8', '--epochs', '30', '--epsilon', '0.5', '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  // Before, the target's 1e-30 spread counted as constant (scale 1): predictions of the order of
  // 0.1 for targets of 1e-30, R² about -1e58.
  for (const key of ['original', 'pruned'] as const) {
    const { r2 } = report[key].test;
    assert.ok(r2 > -1 && r2 <= 1, `${key} R² ${r2}`);
  }
});

test('features spread too little to standardize (under 1e-30) are named in a warning, printed and in report.json, not ignored silently', async (t) => {
  // Iris in units of 1e-30: three of its four features have a standard deviation under 1e-30 and
  // were taken for constants without a word (the model scored lower, and nothing said why).
  const rows = readFileSync(shippedDatasetPath('iris'), 'utf8').trim().split('\n');
  const tiny = [rows[0], ...rows.slice(1).map((line) => line.split(',').map((cell, i, cells) => (i < cells.length - 1 ? `${cell}e-30` : cell)).join(','))];
  const dir = await tempDir(t);
  const csv = join(dir, 'tiny.csv');
  await writeFile(csv, tiny.join('\n') + '\n');
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 'species', ...FAST, '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const warning = /^feature "sepal_length_cm", feature "sepal_width_cm", feature "petal_width_cm" vary too little to standardize \(a standard deviation under 1e-30, or at most 1e-12 and under a millionth of the mean\): the models take them for a constant/;
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.ok(report.warnings.some((text: string) => warning.test(text)), report.warnings.join('\n'));
  assert.match(run.stdout, /\nwarning: feature "sepal_length_cm", feature "sepal_width_cm", feature "petal_width_cm" vary too little/);
});

test('only columns that vary and are still taken for constants are named: not real constants, not tiny spreads that are the scale', () => {
  const x = Array.from({ length: 50 }, (_, i) => [0.1 * 3, ((i % 10) - 4.5) * 1e-20, ((i % 3) - 1) * 1e-35, i]);
  const names = ['constant', 'tiny', 'too-tiny', 'plain'];
  assert.deepEqual(unstandardizableWarnings(x, names).length, 1);
  assert.match(unstandardizableWarnings(x, names)[0]!, /^feature "too-tiny" varies too little to standardize .* take it for a constant, so it is ignored/);
  assert.deepEqual(unstandardizableWarnings(x.map((row) => [row[3]!]), ['plain']), []);
  // The same columns are learnable while one feature varies as the models see it, and the label does.
  assert.doesNotThrow(() => assertLearnable(x, x.map((row) => row[3]!), 'regression', names, 'y'));
  assert.doesNotThrow(() => assertLearnable(x.map((row) => [row[3]!]), x.map((row) => row[1]!), 'regression', ['plain'], 'y'));
});

test('a regression label, or every feature, varying too little to standardize is refused before training (it shipped a model 1e31 times off, or one answer for every row)', async (t) => {
  const x = Array.from({ length: 50 }, (_, i) => [0.1 * 3, ((i % 3) - 1) * 1e-35, i]);
  const refused = (pattern: RegExp) => (error: unknown) => error instanceof UserError && pattern.test(error.message);
  assert.throws(
    () => assertLearnable(x.map((row) => [row[2]!]), x.map((row) => row[1]!), 'regression', ['plain'], 'y'),
    refused(/^the regression label "y" varies too little to standardize \(a standard deviation under 1e-30, or at most 1e-12 and under a millionth of the mean\) over the training rows: no model can learn it; scale it up/),
  );
  // A label whose values float32 cannot tell apart at their size (its spread real in float64):
  // every device prediction would be one value. One whose spread float32 keeps is learnt.
  const blurred = x.map((_, i) => (i === 7 ? 100.0000001 : 100));
  assert.throws(
    () => assertLearnable(x.map((row) => [row[2]!]), blurred, 'regression', ['plain'], 'y'),
    refused(/^the regression label "y" varies too little for its size to survive float32, which devices compute the model in: its 2 values over the training rows all round to 100, so every prediction on a device would be that value; subtract an offset/),
  );
  // Values float32 holds (2^24 and 2^24 + 2), or holds coarsely in a few values, are learnt (a warning names the coarse ones).
  assert.doesNotThrow(() => assertLearnable(x.map((row) => [row[2]!]), x.map((_, i) => 16_777_216 + 2 * (i % 2)), 'regression', ['plain'], 'y'));
  assert.doesNotThrow(() => assertLearnable(x.map((row) => [row[2]!]), x.map((_, i) => 1.6e7 + i / 40), 'regression', ['plain'], 'y'));
  assert.doesNotThrow(() => assertLearnable(x.map((row) => [row[2]!]), x.map((_, i) => 1.7e9 + i * 86_400), 'regression', ['plain'], 'y'));
  // A classification label is never standardized: only the features count there.
  assert.doesNotThrow(() => assertLearnable(x.map((row) => [row[2]!]), x.map((row) => row[1]!), 'classification', ['plain'], 'y'));
  assert.throws(
    () => assertLearnable(x.map((row) => [row[0]!, row[1]!]), x.map((row) => row[2]!), 'classification', ['constant', 'too-tiny'], 'y'),
    refused(/^no feature varies as the models see it: "too-tiny" varies too little to standardize .* and the others hold one value; there is nothing to learn the label from; scale it up/),
  );

  // Through the CLI: one line, exit 2, before training, nothing written.
  const dir = await tempDir(t);
  const rows = readFileSync(shippedDatasetPath('iris'), 'utf8').trim().split('\n');
  const tinyFeatures = join(dir, 'tiny-features.csv');
  await writeFile(tinyFeatures, [rows[0], ...rows.slice(1).map((line) => line.split(',').map((cell, i, cells) => (i < cells.length - 1 ? `${cell}e-36` : cell)).join(','))].join('\n') + '\n');
  const tinyLabel = join(dir, 'tiny-label.csv');
  const random = uniform(7);
  await writeFile(tinyLabel, ['a,b,t', ...Array.from({ length: 200 }, () => `${random()},${random()},${(1 + random()) * 1e-33}`)].join('\n') + '\n');
  for (const [csv, label, message] of [
    [tinyFeatures, 'species', /^fleetprune: no feature varies as the models see it: "sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm" vary too little/],
    [tinyLabel, 't', /^fleetprune: the regression label "t" varies too little to standardize/],
  ] as const) {
    const out = join(dir, `out-${label}`);
    const run = await runCli(['prune', '--data', csv, '--label', label, ...FAST, '--out', out]);
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr, message);
    await assert.rejects(stat(out), { code: 'ENOENT' });
  }
});
