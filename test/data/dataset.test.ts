import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadDatasetFile, parseDataset, inferTask } from '../../shared/data/dataset.ts';
import { splitDataset, thinClasses } from '../../shared/data/split.ts';
import { dataWarnings } from '../../server/pruning/odf2nna.ts';
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
  ['x,label\n1,a\n1e39,b\n', 'label', /row 3, column "x": 1e39 is outside the float32 range/],
  ['x,label\n1,a\n0x10,b\n', 'label', /row 3, column "x": "0x10" is not a finite number/],
  ['x,label\n1,a\nInfinity,b\n', 'label', /row 3, column "x": "Infinity" is not a finite number/],
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

test('a regression label outside float32 is refused', () => {
  assert.throws(
    () => parseDataset('x,y\n1,2.5\n3,-4e38\n', { label: 'y', task: 'regression' }),
    (error: unknown) => error instanceof UserError && /row 3: regression label "-4e38" is not a finite float32 number/.test(error.message),
  );
});

test('a UTF-8 byte order mark is not part of the first column name', () => {
  const data = parseDataset('\uFEFFlabel,x\na,1\nb,2\n', { label: 'label' });
  assert.deepEqual([data.labelName, data.featureNames], ['label', ['x']]);
});

test('a binary file gives a short error: names are clipped and escaped', () => {
  const garbage = Array.from({ length: 3000 }, (_, i) => String.fromCharCode((i * 37) % 256)).join('').replace(/[\n\r,"]/g, 'z');
  assert.throws(
    () => parseDataset(`${garbage},other\n1,2\n`, { label: 'label' }),
    (error: unknown) =>
      error instanceof UserError &&
      error.message.length < 400 &&
      error.message.startsWith('data: no label column "label" (columns: "') &&
      error.message.endsWith('…", "other")') &&
      !/[\u0000-\u001f]/.test(error.message),
  );
});

test('too few rows for a train/validation/test split is a UserError naming the empty splits', () => {
  const three = parseDataset('x,y\n1,1.5\n2,2.5\n3,3.5\n', { label: 'y' });
  assert.throws(
    () => splitDataset(three, 1),
    (error: unknown) => error instanceof UserError && error.message === '3 rows are too few to split into train, validation (15%) and test (20%): the validation split would be empty',
  );
  const classes = parseDataset('x,label\n1,a\n2,a\n3,b\n4,b\n5,c\n6,c\n', { label: 'label' });
  assert.throws(() => splitDataset(classes, 1), /6 rows are too few .*, stratified by class: the validation and test splits would be empty/);
  const enough = splitDataset(parseDataset(`x,y\n${Array.from({ length: 8 }, (_, i) => `${i},${i * 2}`).join('\n')}\n`, { label: 'y' }), 1);
  assert.ok(enough.train.x.length > 0 && enough.validation.x.length > 0 && enough.test.x.length > 0);
});

test('classes too thin for the validation and test splits: named in a warning, or refused when they are most classes', () => {
  const y = [...Array<number>(60).fill(0), 1, 1, ...Array<number>(30).fill(2), 3];
  const x = y.map((label, i) => [i, label]);
  assert.deepEqual(thinClasses(y), [1, 3], '2 rows and 1 row: no test row or no validation row');
  const [warning] = dataWarnings({ task: 'classification', y, classes: ['a', 'b', 'c', 'd'] }, { validationFraction: 0.15, testFraction: 0.2 });
  assert.equal(warning, 'classes "b", "d" have too few rows to be in both the validation and the test split: no score measures them');
  assert.doesNotThrow(() => splitDataset({ task: 'classification', x, y }, 1), 'a few thin classes are a warning, not an error');
  assert.deepEqual(dataWarnings({ task: 'regression', y, classes: [] }, { validationFraction: 0.15, testFraction: 0.2 }), []);

  // A measured quantity read as classes (diabetes' bmi): mostly one-row classes.
  const bmi = loadDatasetFile(shippedDatasetPath('diabetes'), { label: 'bmi', task: 'classification' });
  assert.throws(
    () => splitDataset(bmi, 1),
    (error: unknown) => error instanceof UserError && /^the label has \d+ classes over 442 rows, \d+ of them with too few rows to be in the validation and test splits, so no score could measure them: merge or drop the rare classes, or, if the label is a quantity to predict, prune it as a regression \(--task regression\)$/.test(error.message),
  );
});
