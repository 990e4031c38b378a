import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadDatasetFile, parseDataset, inferTask } from '../../shared/data/dataset.ts';
import { splitDataset } from '../../shared/data/split.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { UserError } from '../../shared/util/errors.ts';

test('loads the shipped data sets and infers their task', () => {
  const iris = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  assert.equal(iris.task, 'classification');
  assert.deepEqual(iris.classes, ['setosa', 'versicolor', 'virginica']);
  assert.equal(iris.x.length, 150);
  assert.equal(iris.featureNames.length, 4);
  const diabetes = loadDatasetFile(shippedDatasetPath('diabetes'), { label: 'progression' });
  assert.equal(diabetes.task, 'regression');
  assert.deepEqual(diabetes.classes, []);
  assert.equal(diabetes.y[0], 151);
});

test('infers classification for few integer labels and regression for many values', () => {
  assert.equal(inferTask(['0', '1', '0', '1', '1', '0', '0', '1', '0', '1', '1', '0']), 'classification');
  assert.equal(inferTask(['a', 'b']), 'classification');
  assert.equal(inferTask(Array.from({ length: 100 }, (_, i) => String(i * 1.5))), 'regression');
});

test('the fingerprint depends on content, not on formatting', () => {
  const a = parseDataset('x,y,label\n1,2,a\n3,4,b\n', { label: 'label' });
  const b = parseDataset('x,y,label\n1.0, 2 ,a\n\n3,4.00,b\n', { label: 'label' });
  const c = parseDataset('x,y,label\n1,2,a\n3,5,b\n', { label: 'label' });
  assert.equal(a.fingerprint, b.fingerprint);
  assert.notEqual(a.fingerprint, c.fingerprint);
});

const badInputs: [string, string, RegExp][] = [
  ['', 'label', /empty/],
  ['x,label\n', 'label', /no data rows/],
  ['x,y\n1,2\n', 'label', /no label column "label"/],
  ['x,label\n1,a\nfoo,b\n', 'label', /row 3, column "x": "foo" is not a finite number/],
  ['x,label\n1,a\nNaN,b\n', 'label', /row 3, column "x": "NaN"/],
  ['x,label\n1,a\n,b\n', 'label', /row 3, column "x"/],
  ['x,label\n1,a\n2,a\n', 'label', /single class \(a\)/],
  ['x,label\n1,a\n2\n', 'label', /not a valid CSV/],
  ['x,x,label\n1,2,a\n2,3,b\n', 'label', /appears twice/],
];
for (const [text, label, message] of badInputs) {
  test(`rejects bad CSV input: ${message.source}`, () => {
    assert.throws(() => parseDataset(text, { label }), (error: unknown) => error instanceof UserError && message.test(error.message));
  });
}

test('a missing file is a UserError naming it', () => {
  assert.throws(
    () => loadDatasetFile('/nonexistent/data.csv', { label: 'y' }),
    (error: unknown) => error instanceof UserError && /\/nonexistent\/data\.csv: no such file/.test(error.message),
  );
});

test('splits are seeded, disjoint and stratified', () => {
  const data = loadDatasetFile(shippedDatasetPath('wine'), { label: 'cultivar' });
  const a = splitDataset(data, 7);
  const b = splitDataset(data, 7);
  const c = splitDataset(data, 8);
  assert.deepEqual(a.test.x, b.test.x);
  assert.notDeepEqual(a.test.x, c.test.x);
  const key = (row: number[]) => row.join(',');
  const seen = new Set([...a.train.x, ...a.validation.x, ...a.test.x].map(key));
  assert.equal(seen.size, data.x.length, 'every row lands in exactly one split');
  const share = (ys: number[], cls: number) => ys.filter((y) => y === cls).length / ys.length;
  for (const cls of [0, 1, 2]) {
    const overall = share(data.y, cls);
    assert.ok(Math.abs(share(a.test.y, cls) - overall) < 0.03, `class ${cls} keeps its share in the test split`);
    assert.ok(Math.abs(share(a.train.y, cls) - overall) < 0.03, `class ${cls} keeps its share in the train split`);
  }
  assert.equal(a.test.x.length, Math.round(59 * 0.2) + Math.round(71 * 0.2) + Math.round(48 * 0.2));
});
