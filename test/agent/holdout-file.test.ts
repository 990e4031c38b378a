import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Holdout, LARGE_HOLDOUT_BYTES, largeHoldoutWarning, MAX_HOLDOUT_BYTES } from '../../agent/holdout.ts';
import { UserError } from '../../shared/util/errors.ts';
import { tempDir } from '../helpers/cli.ts';

test('a holdout file far larger than any holdout needs stops the agent at start with one line, before it is read into memory', async (t) => {
  const dir = await tempDir(t, 'fleetprune-holdout-file-');
  // A valid CSV header and rows, then enough rows (sparse: the file is not written out) to pass the limit.
  const path = join(dir, 'holdout.csv');
  const head = 'f0,f1,kind\n1,2,a\n3,4,b\n';
  await writeFile(path, head);
  const file = await open(path, 'r+');
  await file.truncate(MAX_HOLDOUT_BYTES + 1);
  await file.close();
  const started = performance.now();
  assert.throws(
    () => Holdout.fromFile(path, 'kind'),
    (error: unknown) => error instanceof UserError && /^.*holdout\.csv: 32\.0 MiB; a holdout may be at most 32 MiB/.test(error.message) && !error.message.includes('\n'),
  );
  assert.ok(performance.now() - started < 1000, 'refused without reading it');

  // A holdout within the limit is read as before; a missing file is still named by the reader.
  await writeFile(path, head);
  assert.equal(Holdout.fromFile(path, 'kind').forModel({ task: 'classification', features: ['f0', 'f1'] }).x.length, 2);
  assert.throws(() => Holdout.fromFile(join(dir, 'nope.csv'), 'kind'), /cannot read data file .*nope\.csv: no such file/);
});

test('a holdout over 4 MiB is read, with a warning naming its size, rows and read time (a small device may lack the memory); a smaller one gets none', async (t) => {
  const dir = await tempDir(t, 'fleetprune-holdout-file-');
  const path = join(dir, 'holdout.csv');
  const row = '1.25,2.5,a\n3.75,4.5,b\n';
  const rows = Math.ceil((LARGE_HOLDOUT_BYTES + 1) / row.length) * 2;
  await writeFile(path, 'f0,f1,kind\n' + row.repeat(rows / 2));
  const large = Holdout.fromFile(path, 'kind');
  assert.equal(large.rows, rows);
  assert.match(
    largeHoldoutWarning(large)!,
    new RegExp(`^the holdout ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is 4\\.0 MiB \\(${rows} rows\\): reading it took \\d+\\.\\d s, and each model reading columns of it no model read before .* some 30 times the file in memory; a few thousand rows measure accuracy to about 1 %: a smaller file serves as well$`),
  );
  await writeFile(path, 'f0,f1,kind\n' + row.repeat(1000));
  assert.equal(largeHoldoutWarning(Holdout.fromFile(path, 'kind')), null);
  assert.equal(largeHoldoutWarning(Holdout.fromText('f0,kind\n1,a\n', 'kind')), null, 'no file, no size');
});

test('a --label column that the model reads as a feature is named as such, not as a missing column', () => {
  const holdout = Holdout.fromText('temperature,humidity,kind\n20,0.5,a\n21,0.6,b\n', 'temperature', 'site.csv');
  assert.throws(
    () => holdout.forModel({ task: 'classification', features: ['temperature', 'humidity'] }),
    /^UserError: site\.csv: the label column "temperature" is one of the model's features \(is --label the right column\?\)$/,
  );
  // Read with the right label, the same file fits.
  assert.equal(Holdout.fromText('temperature,humidity,kind\n20,0.5,a\n21,0.6,b\n', 'kind', 'site.csv').forModel({ task: 'classification', features: ['temperature', 'humidity'] }).x.length, 2);
});
