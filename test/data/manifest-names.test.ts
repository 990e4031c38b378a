import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_MANIFEST_BYTES } from '../../shared/artifact/manifest.ts';
import { parseDataset } from '../../shared/data/dataset.ts';
import { UserError } from '../../shared/util/errors.ts';

/** 60 rows of two features and a two-class label, the first feature's name `first`. */
function csvWithFeatureName(first: string): string {
  const rows = Array.from({ length: 60 }, (_, i) => `${i % 7},${(i * 3) % 11},${i % 2 ? 'a' : 'b'}`);
  return [`${first},b,label`, ...rows].join('\n') + '\n';
}

test('column names too long for a manifest.json that can be read back (over 1 MiB) are refused when the data is read, in one line', () => {
  // The artifact prune wrote from this did not verify, push or deploy: "manifest.json: 1101542 bytes, more than a manifest can be".
  assert.throws(
    () => parseDataset(csvWithFeatureName('f'.repeat(1_100_000)), { label: 'label' }, 'wide.csv'),
    (error: unknown) =>
      error instanceof UserError &&
      /^wide\.csv: the column and class names take \d+ bytes in the model's manifest\.json, more than the \d+ it has room for/.test(error.message) &&
      !error.message.includes('\n') &&
      error.message.length < 400,
  );
  // So are many class names that together are too long.
  const classes = Array.from({ length: 20_000 }, (_, i) => `${'c'.repeat(60)}${i}`);
  const rows = classes.flatMap((name, i) => [`${i},${name}`, `${i + 0.5},${name}`]);
  assert.throws(() => parseDataset(['x,label', ...rows].join('\n'), { label: 'label' }), /the column and class names take \d+ bytes/);
});

test('names that fit are read as before; a device holdout (given the features) is not checked', () => {
  const wide = parseDataset(csvWithFeatureName('f'.repeat(MAX_MANIFEST_BYTES - 64 * 1024)), { label: 'label' });
  assert.equal(wide.featureNames[0]!.length, MAX_MANIFEST_BYTES - 64 * 1024);
  const holdout = parseDataset(csvWithFeatureName('f'.repeat(1_100_000)), { label: 'label', features: ['b'], minClasses: 1 });
  assert.deepEqual(holdout.featureNames, ['b']);
});
