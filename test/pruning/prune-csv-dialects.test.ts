import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';
import { parseDataset } from '../../shared/data/dataset.ts';

/** 60 rows of two features and a two-class label, cells joined by `separator`, numbers written with `decimal`. */
function csv(separator: string, decimal = '.'): string {
  const rows = Array.from({ length: 60 }, (_, i) => [((i * 0.37) % 1).toFixed(2).replace('.', decimal), ((i * 0.61) % 1).toFixed(2).replace('.', decimal), i % 2 ? 'x' : 'y']);
  return [['a', 'b', 'label'], ...rows].map((row) => row.join(separator)).join('\n') + '\n';
}

test('a semicolon- or tab-separated export is named as such: one line, exit 2, nothing written', async (t) => {
  const dir = await tempDir(t);
  // Excel in a locale with a decimal comma writes "0,37;0,61;x"; a TSV export, tabs.
  const files = { 'semicolons.csv': csv(';'), 'decimal-commas.csv': csv(';', ','), 'bom-semicolons.csv': `\uFEFF${csv(';')}`, 'tabs.csv': csv('\t') };
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const names = Object.keys(files);
  const results = await runCliBatch(names.map((name) => ({ args: ['prune', '--data', join(dir, name), '--label', 'label', '--units', '8', '--epochs', '2', '--out', join(dir, `out-${name}`)] })));
  results.forEach((run, i) => {
    const name = names[i]!;
    assert.equal(run.code, 2, `${name}: ${run.stderr}`);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    const separator = name === 'tabs.csv' ? 'tabs' : 'semicolons';
    assert.match(run.stderr, new RegExp(`${name.replace('.', '\\.')}: the header is separated by ${separator}, not commas: fleetprune reads comma-separated CSV`), run.stderr);
  });
  assert.deepEqual((await readdir(dir)).filter((entry) => entry.startsWith('out-')), [], 'nothing is written');
});

/** 60 rows sorted by class, as an export lists them: a row number then tells the class. */
function rows(): string[][] {
  return Array.from({ length: 60 }, (_, i) => [((i * 0.37) % 1).toFixed(2), ((i * 0.61) % 1).toFixed(2), i < 30 ? 'x' : 'y']);
}

const WARNING = /^feature "id" looks like a row number \(a different whole number on every row, together a run without gaps\): the model learns the rows' order from it/;

test('a row-number column (an "id" exported with the data) is named in a warning, printed and in report.json', async (t) => {
  const dir = await tempDir(t);
  const csv = join(dir, 'with-id.csv');
  await writeFile(csv, [['id', 'a', 'b', 'label'], ...rows().map((row, i) => [String(i + 1), ...row])].map((row) => row.join(',')).join('\n') + '\n');
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 'label', '--units', '8', '--epochs', '2', '--epsilon', '0.5', '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  assert.ok(run.stdout.split('\n').some((line) => WARNING.test(line.replace(/^warning: /, ''))), run.stdout);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.ok(report.warnings.some((warning: string) => WARNING.test(warning)), JSON.stringify(report.warnings));
});

test('a shuffled row number is one too; integers with repeats or gaps, few rows, and columns read for an existing model are not', () => {
  const text = (ids: number[], count = ids.length) =>
    [['id', 'a', 'b', 'label'], ...rows().slice(0, count).map((row, i) => [String(ids[i]), ...row])].map((row) => row.join(',')).join('\n') + '\n';
  const shuffled = Array.from({ length: 60 }, (_, i) => (i * 7) % 60);
  assert.ok(parseDataset(text(shuffled), { label: 'label' }).warnings!.some((w) => WARNING.test(w)));
  const repeats = Array.from({ length: 60 }, (_, i) => i % 59);
  const gaps = Array.from({ length: 60 }, (_, i) => i * 2);
  for (const ids of [repeats, gaps]) assert.deepEqual(parseDataset(text(ids), { label: 'label' }).warnings, []);
  assert.deepEqual(parseDataset(text(Array.from({ length: 12 }, (_, i) => i), 12), { label: 'label', minClasses: 1 }).warnings, [], 'too few rows to tell');
  assert.deepEqual(parseDataset(text(shuffled), { label: 'label', features: ['id', 'a', 'b'], minClasses: 1 }).warnings, []);
});
