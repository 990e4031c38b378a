import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { test } from 'node:test';
import { isOneLineError, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';

const FAST = ['--units', '8', '--epochs', '2', '--epsilon', '0.5'];

/** 60 rows of two features and a two-class label, as CSV lines without line endings. */
function lines(): string[] {
  return ['a,b,label', ...Array.from({ length: 60 }, (_, i) => `${(i * 0.37) % 1},${(i * 0.61) % 1},${i % 2 ? 'x' : 'y'}`)];
}

test('a CSV with mixed line endings (CRLF rows, then LF rows appended) prunes like any other', async (t) => {
  const dir = await tempDir(t);
  const [header, ...rows] = lines();
  const csv = join(dir, 'mixed.csv');
  // csv-parse took the first line's CRLF for every line: the LF rows became one row of 61 cells.
  await writeFile(csv, `${header}\r\n${rows.slice(0, 30).join('\r\n')}\r\n${rows.slice(30).join('\n')}\n`);
  const out = join(dir, 'out');
  const run = await runCli(['prune', '--data', csv, '--label', 'label', ...FAST, '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.equal(report.data.rows, 60);
  assert.deepEqual(report.data.classes, ['x', 'y']);
});

test('bad rows are named by the line they are on, blank lines and multi-line cells counted', async (t) => {
  const dir = await tempDir(t);
  const blank = join(dir, 'blank.csv');
  await writeFile(blank, 'a,b,label\n1,2,x\n\n\n3,4,y\n5,oops,x\n');
  const multiline = join(dir, 'multiline.csv');
  await writeFile(multiline, 'a,b,label\n1,2,"two\nlines"\n3,4,y\n5,6,\n');
  const cases: [string, RegExp][] = [
    [blank, /blank\.csv: line 6, column "b": "oops" is not a finite number\n$/],
    [multiline, /multiline\.csv: line 5: the label "label" is empty\n$/],
  ];
  for (const [csv, message] of cases) {
    const run = await runCli(['prune', '--data', csv, '--label', 'label', '--out', join(dir, 'out')]);
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr, message);
  }
});

test('a regression label with a single value is refused like a single class: exit 2, one line, nothing written', async (t) => {
  const dir = await tempDir(t);
  const csv = join(dir, 'constant.csv');
  await writeFile(csv, ['a,b,target', ...Array.from({ length: 60 }, (_, i) => `${i % 7},${i % 5},5.5`)].join('\n') + '\n');
  const out = join(dir, 'out');
  for (const task of [[], ['--task', 'regression']]) {
    const run = await runCli(['prune', '--data', csv, '--label', 'target', ...task, ...FAST, '--out', out]);
    assert.equal(run.code, 2, run.stderr);
    assert.ok(isOneLineError(run.stderr), run.stderr);
    assert.match(run.stderr, /constant\.csv: the regression label "target" has a single value \(5\.5\); need at least two\n$/);
  }
  await assert.rejects(stat(out), 'nothing is written');
});

test('a regression label float32 holds coarsely (far from zero for its spread) is named in a warning, printed and in report.json; one it cannot tell apart at all is refused; the same label less its offset is neither', async (t) => {
  const dir = await tempDir(t);
  // i/60 over 1.6e6: float32, in which model.onnx adds the target mean, steps by 0.125 there (an
  // eighth of the label's range: coarse); over 1.6e9 it steps by 128, and every prediction is one value.
  const rows = Array.from({ length: 60 }, (_, i) => [(i * 0.37) % 1, (i * 0.61) % 1, i / 60]);
  const labelled = async (name: string, offset: number) => {
    const path = join(dir, name);
    await writeFile(path, ['a,b,t', ...rows.map(([a, b, y]) => `${a},${b},${offset + y!}`)].join('\n') + '\n');
    return path;
  };
  const [coarse, lost, near] = [await labelled('coarse.csv', 1_600_000), await labelled('lost.csv', 1_600_000_000), await labelled('near.csv', 0)];
  const refused = await runCli(['prune', '--data', lost, '--label', 't', '--task', 'regression', ...FAST, '--out', join(dir, 'out-lost')]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /^fleetprune: the regression label "t" varies too little for its size to survive float32, which devices compute the model in: its \d+ values over the training rows all round to 1600000000, so every prediction on a device would be that value; subtract an offset/);
  const warning = /^the label "t" is too far from zero for its spread to survive float32, .*subtract an offset/;
  for (const [csv, warned] of [[coarse, true], [near, false]] as const) {
    const out = join(dir, `out-${warned}`);
    const run = await runCli(['prune', '--data', csv, '--label', 't', '--task', 'regression', ...FAST, '--out', out]);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    assert.equal(report.warnings.some((w: string) => warning.test(w)), warned, JSON.stringify(report.warnings));
    assert.equal(run.stdout.split('\n').some((line) => warning.test(line.replace(/^warning: /, ''))), warned, run.stdout);
  }
});

test('a UTF-16 CSV (Excel "Unicode Text") is named as such, not reported as a broken row', async (t) => {
  const dir = await tempDir(t);
  const csv = join(dir, 'utf16.csv');
  // Was: "not a valid CSV file: Invalid Record Length: expect 3, got 1 on line 62".
  await writeFile(csv, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${lines().join('\r\n')}\r\n`, 'utf16le')]));
  const run = await runCli(['prune', '--data', csv, '--label', 'label', '--out', join(dir, 'out')]);
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /utf16\.csv: the file is UTF-16 text, not UTF-8; save it as CSV in UTF-8\n$/);
});

test('a workbook or compressed file given as --data is named as such, not as UTF-16 text or a tab-separated header', async (t) => {
  const dir = await tempDir(t);
  const csv = Buffer.from(`${lines().join('\n')}\n`);
  const files: [string, Buffer, RegExp][] = [
    // An .xlsx is a zip archive; its NUL-rich header was "UTF-16 text", a zip of mostly text "separated by tabs".
    ['sheet.xlsx', Buffer.concat([Buffer.from('PK\x03\x04\x14\x00\x00\x00\x08\x00', 'latin1'), Buffer.alloc(40), Buffer.from('[Content_Types].xml')]), /sheet\.xlsx: the file is a zip archive \(an Excel \.xlsx or OpenDocument \.ods workbook\?\), not CSV text: save the sheet as "CSV UTF-8 \(comma delimited\)"\n$/],
    ['sheet.xls', Buffer.concat([Buffer.from('d0cf11e0a1b11ae1', 'hex'), Buffer.alloc(504)]), /sheet\.xls: the file is an Excel 97-2003 workbook \(\.xls\), not CSV text/],
    ['data.csv.gz', gzipSync(csv), /data\.csv\.gz: the file is gzip-compressed, not CSV text: decompress it first \(gunzip\)\n$/],
  ];
  const runs = await runCliBatch(
    await Promise.all(
      files.map(async ([name, bytes]) => {
        await writeFile(join(dir, name), bytes);
        return { args: ['prune', '--data', join(dir, name), '--label', 'label', '--out', join(dir, 'out')] };
      }),
    ),
  );
  for (const [index, [name, , message]] of files.entries()) {
    assert.equal(runs[index]!.code, 2, `${name}: ${runs[index]!.stderr}`);
    assert.ok(isOneLineError(runs[index]!.stderr), runs[index]!.stderr);
    assert.match(runs[index]!.stderr, message, name);
  }
});

test('a general model too large to train (16 layers of 4096 units) is refused up front, not an internal error minutes later', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const iris = 'shared/datasets/iris.csv';
  // Each flag is within its own limits; together they ran the wasm heap out of memory.
  const run = await runCli(['prune', '--data', iris, '--label', 'species', '--layers', '16', '--units', '4096', '--epochs', '1', '--out', out], {}, { timeoutMs: 60_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /^fleetprune: --units: 16 hidden layers of 4096 units need 251,658,240 weights between them, more than training can hold .*use fewer layers or units\n$/);
  await assert.rejects(stat(out), 'nothing is written');
});

test('a general model too large for its features (20,000 into 4096 units) is refused before training, not an internal error after it', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const csv = join(dir, 'wide.csv');
  const features = 20_000;
  const header = [...Array.from({ length: features }, (_, i) => `f${i}`), 'y'].join(',');
  const rows = Array.from({ length: 12 }, (_, r) => [...Array.from({ length: features }, (_, i) => (r * 7 + i) % 10), r % 2].join(','));
  await writeFile(csv, [header, ...rows].join('\n') + '\n');
  // One layer of 4096 is within every per-flag limit; the first layer's 81,920,000 weights ran the wasm heap out of memory.
  const run = await runCli(['prune', '--data', csv, '--label', 'y', '--layers', '1', '--units', '4096', '--epochs', '1', '--epsilon', '0.5', '--out', out], {}, { timeoutMs: 60_000 });
  assert.equal(run.code, 2, run.stderr);
  // The lines before it say which backend would have trained; the failure itself is one line, no stack.
  assert.doesNotMatch(run.stderr, /\n\s+at /);
  assert.match(
    run.stderr,
    /\nfleetprune: the general model \(20,000 features into 1 hidden layer of 4,096 units\) needs 81,928,192 weights, more than training can hold \(at most 52,000,000\): use fewer units or layers, or fewer features\n$/,
  );
  assert.doesNotMatch(run.stdout, /\[1\/6\] train done/, 'refused before the general model trains');
  await assert.rejects(stat(out), 'nothing is written');
});

test('a regression data set of 300,000 rows is read and split (neither the float32 check of its label nor the split overflows the stack)', async () => {
  const { parseDataset } = await import('../../shared/data/dataset.ts');
  const { splitDataset } = await import('../../shared/data/split.ts');
  const rows = ['a,b,y'];
  for (let i = 0; i < 300_000; i++) rows.push(`${i % 7},${i % 3},${i % 101}`);
  const data = parseDataset(rows.join('\n'), { label: 'y', task: 'regression' });
  assert.equal(data.x.length, 300_000);
  assert.deepEqual(data.warnings, []);
  // One group (a regression target is not stratified): its rows were spread as push() arguments.
  const splits = splitDataset(data, 7);
  assert.deepEqual([splits.train.x.length, splits.validation.x.length, splits.test.x.length], [195_000, 45_000, 60_000]);
});
