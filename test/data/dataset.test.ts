import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadDatasetFile, parseDataset, inferTask } from '../../shared/data/dataset.ts';
import { splitDataset, thinClasses } from '../../shared/data/split.ts';
import { dataWarnings } from '../../server/pruning/odf2nna.ts';
import { SHIPPED_DATASETS, shippedDatasetPath, type ShippedDatasetName } from '../../shared/datasets/index.ts';
import { UserError } from '../../shared/util/errors.ts';
import { tempDir } from '../helpers/cli.ts';

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
  // Spaces inside quoted header names too, as inside quoted cells.
  const quoted = parseDataset('"x", " y " ,"label "\n1,2,a\n3,4,b\n', { label: 'label' });
  assert.deepEqual(quoted.featureNames, ['x', 'y']);
  assert.equal(quoted.fingerprint, a.fingerprint);
  // A model whose feature was saved with its spaces still finds the column.
  assert.deepEqual(parseDataset('x,y,label\n1,2,a\n3,4,b\n', { label: 'label', features: [' y ', 'x'] }).x, [[2, 1], [4, 3]]);
});

const badInputs: [string, string, RegExp][] = [
  ['', 'label', /empty/],
  ['x,label\n', 'label', /no data rows/],
  ['x,y\n1,2\n', 'label', /no label column "label"/],
  ['x,label\n1,a\nfoo,b\n', 'label', /line 3, column "x": "foo" is not a finite number/],
  ['x,label\n1,a\nNaN,b\n', 'label', /line 3, column "x": "NaN"/],
  ['x,label\n1,a\n,b\n', 'label', /line 3, column "x"/],
  ['x,label\n1,a\n2,a\n', 'label', /single class \(a\)/],
  ['x,label\n1,a\n2\n', 'label', /not a valid CSV/],
  ['x,x,label\n1,2,a\n2,3,b\n', 'label', /appears twice/],
  // A quote never closed: named where it opens (csv-parse named the last line of the file), escaped "" and closed multi-line cells counted through.
  ['x,label\n1,"a\n2,b\n3,c\n4,d\n', 'label', /^data: not a valid CSV file: line 2 opens a quoted cell \("\) that is never closed$/],
  ['x,label\n1,"say ""hi""\nthere"\r\n2,"b""\n3,c\n', 'label', /^data: not a valid CSV file: line 4 opens a quoted cell/],
  // A stray quote: its column counted from 1 (csv-parse's "field 1" counts from 0).
  ['x,label\n1,a\n2,b"c\n', 'label', /^data: not a valid CSV file: line 3, column 2: a quote \("\) inside a cell that does not start with one; quote the whole cell and double the quotes in it \("a""b"\)$/],
  ['x,label\n1,a\n1e39,b\n', 'label', /line 3, column "x": 1e39 is outside the float32 range/],
  ['x,label\n1,a\n0x10,b\n', 'label', /line 3, column "x": "0x10" is not a finite number/],
  ['x,label\n1,a\nInfinity,b\n', 'label', /line 3, column "x": "Infinity" is not a finite number/],
  // pandas' to_csv writes its row index as a column with no name: a model would learn the rows' order from it.
  [',x,label\n0,1,a\n1,2,b\n', 'label', /^data: column 1 has no name in the header \(pandas writes its row index so: save with index=False\), or name it$/],
  ['x, ,label\n1,0,a\n2,1,b\n', 'label', /column 2 has no name/],
  // Features with nothing in them: the run shipped a model that ignores its inputs, "within tolerance".
  ['x,z,label\n1,0,a\n1.0,0,b\n1,0,a\n', 'label', /^data: every feature column holds a single value, the same on every row: there is nothing to learn the label from$/],
  // A comma at the end of every line is not pandas' index, as the message said.
  ['x,label,\n1,a,\n2,b,\n', 'label', /^data: every line ends with a comma, which makes an empty column 3 with no name: remove the trailing commas$/],
  ['x,label,\n1,a,\n2,b,0\n', 'label', /^data: column 3 has no name in the header \(pandas/],
  // manifest.json holds no NUL: such a name made an artifact its own verify refused, after the whole run.
  ['x\0,label\n1,a\n2,b\n', 'label', /column "x\\u0000" has a NUL character \(U\+0000\) in its name/],
  ['x,label\n1,a\n2,b\0\n', 'label', /the label "label" has a class "b\\u0000" with a NUL character/],
  // A line break or tab in a name (a quoted cell) split every listing and log line that printed it.
  ['"x\ny",label\n1,a\n2,b\n', 'label', /^data: column "x\\ny" has a line feed \(U\+000A\) in its name; names are printed on one line, as written: rename it$/],
  ['x,"la\tbel"\n1,a\n2,b\n', 'la\tbel', /^data: the label "la\\tbel" has a tab \(U\+0009\) in its name/],
  ['x,label\n1,"a\r\nb"\n2,b\n', 'label', /^data: the label "label" has a class "a\\r\\nb" with a carriage return \(U\+000D\); class names are printed on one line, as written: fix the label cells$/],
  ['x,label\n1,"a\u0007"\n2,b\n', 'label', /has a class "a\\u0007" with a control character \(U\+0007\)/],
  // Text-direction controls and C1 controls: the rest of a listing's line read reversed, or a terminal took U+009B as an escape.
  ['a\u202eb,label\n1,a\n2,b\n', 'label', /^data: column "a\\u202eb" has a text-direction control \(U\+202E\) in its name; names are printed on one line, as written: rename it$/],
  ['x,label\n1,evil\u2066gnp\n2,b\n', 'label', /has a class "evil\\u2066gnp" with a text-direction control \(U\+2066\)/],
  ['x,label\n1,x\u009b31m\n2,b\n', 'label', /has a class "x\\u009b31m" with a control character \(U\+009B\)/],
  ['x,label\n1,a\u2028b\n2,b\n', 'label', /has a class "a\\u2028b" with a line separator \(U\+2028\)/],
];
for (const [text, label, message] of badInputs) {
  test(`rejects bad CSV input: ${message.source}`, () => {
    assert.throws(() => parseDataset(text, { label }), (error: unknown) => error instanceof UserError && message.test(error.message));
  });
}

test('a CSV error that quotes a huge field (a stray quote after 2 MB) stays one short line', () => {
  const text = `x,label\n1,a\n${'9'.repeat(2_000_000)}"\n\u0001,b\n`;
  assert.throws(
    () => parseDataset(text, { label: 'label' }),
    (error: unknown) => error instanceof UserError && /^data: not a valid CSV file: /.test(error.message) && error.message.length < 300 && !/[\n\u0000-\u001f]/.test(error.message),
  );
});

test('a file that is not UTF-8 (Excel\'s Windows-1252 "CSV") is refused, naming the line, not read with its letters lost', async (t) => {
  const path = join(await tempDir(t), 'cp1252.csv');
  // "Bär" and "Bör" both read as "B\uFFFDr": two classes became one, without a word.
  writeFileSync(path, Buffer.from('x,label\n1,B\xe4r\n2,B\xf6r\n3,Baum\n', 'latin1'));
  assert.throws(
    () => loadDatasetFile(path, { label: 'label' }),
    (error: unknown) => error instanceof UserError && /cp1252\.csv: line 2 is not UTF-8 text \(Windows-1252 or Latin-1, as Excel's "CSV \(comma delimited\)" saves\?\): save it as "CSV UTF-8/.test(error.message),
  );
  // UTF-8, with a byte order mark and a U+FFFD of its own, is read as it is.
  writeFileSync(path, '\uFEFFx,label\n1,B\u00e4r\n2,B\u00f6r\n3,\uFFFD\n');
  assert.deepEqual(loadDatasetFile(path, { label: 'label' }).classes, ['B\u00e4r', 'B\u00f6r', '\uFFFD']);
});

test('lines of bare separators (a spreadsheet\'s empty rows below its data) are blank lines; row numbers stay the lines of the file', () => {
  // Was: "line 4, column "x": "" is not a finite number", for rows the user never typed.
  const data = parseDataset('x,y,label\n1,2,a\n3,4,b\n,,\n"","",""\n', { label: 'label' });
  assert.deepEqual(data.x, [[1, 2], [3, 4]]);
  assert.equal(data.fingerprint, parseDataset('x,y,label\n1,2,a\n3,4,b\n', { label: 'label' }).fingerprint);
  assert.throws(() => parseDataset('x,y,label\n1,2,a\n,,\n3,,b\n', { label: 'label' }), /data: line 4, column "y": "" is not a finite number$/);
});

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
    (error: unknown) => error instanceof UserError && /line 3: regression label "-4e38" is not a finite float32 number/.test(error.message),
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

test('numeric class labels are numbers: "1" and "1.0" are one class, named canonically; text labels stay as written', () => {
  const data = parseDataset('x,label\n1,0\n2,1\n3,1.0\n4,0\n5,1\n6,0.0\n', { label: 'label' });
  assert.equal(data.task, 'classification');
  assert.deepEqual(data.classes, ['0', '1']);
  assert.deepEqual(data.y, [0, 1, 1, 0, 1, 0]);
  const forced = parseDataset('x,label\n1,10\n2,2\n3,1e1\n4,2.50\n', { label: 'label', task: 'classification' });
  assert.deepEqual(forced.classes, ['2', '2.5', '10'], 'ordered by value, not as text');
  assert.deepEqual(forced.y, [2, 0, 2, 1]);
  assert.throws(() => parseDataset('x,label\n1,1\n2,1.0\n', { label: 'label' }), /single class \(1\)/);
  // One label that is not a number makes every label a name: "1" and "1.0" are then different words.
  const words = parseDataset('x,label\n1,b\n2,a\n3,1.0\n4,1\n', { label: 'label' });
  assert.deepEqual(words.classes, ['1', '1.0', 'a', 'b']);
  assert.deepEqual(words.warnings!.filter((w) => /more than one way/.test(w)), [], 'text classes merge nothing');
  // Numbers merged by value are named in a warning: "01" and "1" may be two codes to whoever wrote them.
  assert.deepEqual(data.warnings!.filter((w) => /more than one way/.test(w)), [
    'the label "label" writes classes more than one way ("0", "0.0" are class "0"; "1", "1.0" are class "1"): labels that are all numbers are classes by value; if these are different classes, give them names that are not numbers (c01, c1)',
  ]);
  const codes = parseDataset('x,label\n1,01\n2,1\n3,2\n4,01\n', { label: 'label', task: 'classification' });
  assert.deepEqual(codes.classes, ['1', '2']);
  assert.match(codes.warnings!.join('\n'), /\("01", "1" are class "1"\)/);
  assert.match(forced.warnings!.join('\n'), /\("10", "1e1" are class "10"\)/);
  // Read for a model, labels are named as the model names its classes: with a text class, "01" and "1" stay two.
  const forModel = parseDataset('x,label\n1,01\n2,1\n', { label: 'label', task: 'classification', features: ['x'], minClasses: 1, classNames: ['01', '1', 'x'] });
  assert.deepEqual(forModel.classes, ['01', '1']);
  const forNumericModel = parseDataset('x,label\n1,01\n2,1.0\n3,z\n', { label: 'label', task: 'classification', features: ['x'], minClasses: 1, classNames: ['1', '2'] });
  assert.deepEqual(forNumericModel.classes, ['1', 'z'], 'by value, a label that is no number as written');
});

test('a title or "sep=" line above the column names, and a row of the wrong width, are named by their lines', () => {
  for (const first of ['sep=,', 'Iris export 2024']) {
    assert.throws(
      () => parseDataset(`${first}\nx,y,label\n1,2,a\n`, { label: 'label' }, 'data.csv'),
      (error: unknown) => error instanceof UserError && error.message === `data.csv: not a valid CSV file: line 2 has 3 fields, and line 1, read as the header, has ${first === 'sep=,' ? 2 : 1}: if line 1 is a title or a "sep=" line, remove it so that the file starts with its column names`,
    );
  }
  assert.throws(
    () => parseDataset('x,y,label\n1,2,a\n\n1,2\n', { label: 'label' }, 'data.csv'),
    (error: unknown) => error instanceof UserError && error.message === 'data.csv: not a valid CSV file: line 4 has 2 fields, and line 1, read as the header, has 3',
  );
});

test('numeric labels a float64 cannot tell apart (over 15 significant digits) stay distinct classes, as written', () => {
  const big = parseDataset('x,label\n1,9007199254740993\n2,9007199254740992\n3,9007199254740993\n4,9007199254740992\n', { label: 'label', task: 'classification' });
  assert.deepEqual(big.classes, ['9007199254740992', '9007199254740993']);
  assert.deepEqual(big.y, [1, 0, 1, 0]);
  const ids = Array.from({ length: 40 }, (_, i) => `${i},12345678901234567${i % 2}`).join('\n');
  assert.equal(parseDataset(`x,id\n${ids}\n`, { label: 'id' }).task, 'classification', 'two classes, as inferTask counts them');
  // 15 significant digits or fewer are still values: 0.100000000000000 is 0.1.
  assert.deepEqual(parseDataset('x,label\n1,0.1\n2,0.100000000000000\n3,2\n', { label: 'label', task: 'classification' }).classes, ['0.1', '2']);
});

test('three integer classes are classes even on 30 rows or fewer; more distinct values need a tenth of the rows', () => {
  const labels = (classes: number, rows: number) => Array.from({ length: rows }, (_, i) => String(i % classes));
  assert.equal(inferTask(labels(3, 30)), 'classification');
  assert.equal(inferTask(labels(3, 12)), 'classification');
  assert.equal(inferTask(labels(4, 40)), 'classification');
  assert.equal(inferTask(labels(4, 39)), 'regression');
  assert.equal(inferTask(labels(21, 1000)), 'regression', 'at most 20 classes');
  assert.equal(parseDataset(`x,y\n${labels(3, 30).map((label, i) => `${i},${label}`).join('\n')}\n`, { label: 'y' }).task, 'classification');
});

test('a label taken as a regression target with a handful of distinct values is named in a warning; given as regression, or with many values, it is not', () => {
  const rows = (values: readonly string[], n: number) => `x,grade\n${Array.from({ length: n }, (_, i) => `${(i * 7) % 10},${values[i % values.length]}`).join('\n')}\n`;
  const halves = parseDataset(rows(['1.5', '2.5', '0.5'], 30), { label: 'grade' });
  assert.equal(halves.task, 'regression');
  assert.deepEqual(halves.warnings, [
    'the label "grade" has only 3 distinct values (0.5, 1.5, 2.5), so it was taken as a regression target: if they are classes, give the task as classification (--task classification, or "task": "classification" in a job request)',
  ]);
  // Four integer codes on 30 rows are too many for classes by inferTask's rule: the same warning.
  assert.match(parseDataset(rows(['1', '2', '3', '4'], 30), { label: 'grade' }).warnings?.[0] ?? '', /has only 4 distinct values \(1, 2, 3, 4\)/);
  assert.deepEqual(parseDataset(rows(['1.5', '2.5'], 30), { label: 'grade', task: 'regression' }).warnings, [], 'the task given');
  assert.deepEqual(parseDataset(rows(Array.from({ length: 21 }, (_, i) => String(i + 0.5)), 42), { label: 'grade' }).warnings, [], '21 values');
  // More than inferTask's 20 classes, but whole numbers each on ten rows or more: codes, maybe.
  const codes = (count: number, n: number) => rows(Array.from({ length: count }, (_, i) => String(i)), n);
  assert.match(parseDataset(codes(25, 500), { label: 'grade' }).warnings?.[0] ?? '', /^the label "grade" has only 25 distinct values \(0, 1, 2, 3, 4, \.\.\.\), so it was taken as a regression target/);
  assert.deepEqual(parseDataset(codes(25, 249), { label: 'grade' }).warnings, [], '25 whole numbers on fewer than 250 rows: too few repeats');
  assert.deepEqual(parseDataset(codes(101, 5000), { label: 'grade' }).warnings, [], 'more than 100 whole numbers');
  assert.match(parseDataset(codes(100, 5000), { label: 'grade' }).warnings?.[0] ?? '', /has only 100 distinct values/);
});

test('the fingerprint tells apart cells with commas or quotes; data without them keeps its fingerprint', () => {
  const plain = parseDataset('a,b,y\n1,2,c\n3,4,d\n', { label: 'y' });
  const commas = parseDataset('"a,b",y\n1,"2,c"\n3,"4,d"\n', { label: 'y' });
  assert.notEqual(plain.fingerprint, commas.fingerprint);
  // A line break inside a label is not a new row (in a holdout read for a model: training data refuses such a class name).
  const multiline = parseDataset('a,y\n1,"c\n2,d"\n3,e\n', { label: 'y', features: ['a'] });
  const rows = parseDataset('a,y\n1,c\n2,d\n3,e\n', { label: 'y', features: ['a'] });
  assert.notEqual(multiline.fingerprint, rows.fingerprint);
  // The canonical content as it always was: artifacts' lineage does not change.
  assert.equal(plain.fingerprint, createHash('sha256').update('a,b,y\n1,2,c\n3,4,d\n').digest('hex'));
  const shipped: Record<ShippedDatasetName, string> = {
    iris: '27ae50b33722da23f76475e7fd89b5e0282574d3cce570f1ae2d8773d596278b',
    wine: '0b1878a85c7319cb85c8f5eed4731bac48b130b99bb19169c8ac7f55fbc984f7',
    breast_cancer: '518936fa92ca3d8a78c420aee22030c4e519ffcba3be15dd23e83f2fc22e20e5',
    diabetes: '2d9516499b8b56e76cf361824b4608b0bef572b03e561ba3410ca4b4ce37b5d4',
  };
  for (const [name, fingerprint] of Object.entries(shipped)) {
    const { label } = SHIPPED_DATASETS[name as ShippedDatasetName];
    assert.equal(loadDatasetFile(shippedDatasetPath(name as ShippedDatasetName), { label }).fingerprint, fingerprint, name);
  }
});

test('features float32 cannot hold are rounded to float32 and named in a warning; the others are kept as written', () => {
  const lines = Array.from({ length: 40 }, (_, i) => `${1_600_000_000 + 7 * i},${10000.1 + i},${(i * 0.37).toFixed(2)},5000.1,${i % 2 ? 'a' : 'b'}`);
  const text = `ts,offset,small,const,label\n${lines.join('\n')}\n`;
  const data = parseDataset(text, { label: 'label' });
  // ts: 1.6e9 moves by up to 64 in float32, 0.2 of its spread. offset: 10000.1 moves by 4e-4,
  // 3e-5 of its spread (11.5), under the 1e-4 tolerance. const: a constant has no spread to lose,
  // but is rounded too (a device feeds it rounded), without a warning.
  data.x.forEach((row, i) => {
    assert.equal(row[0], Math.fround(1_600_000_000 + 7 * i));
    assert.equal(row[1], Number(`${10000.1 + i}`));
    assert.equal(row[2], Number((i * 0.37).toFixed(2)));
    assert.equal(row[3], Math.fround(5000.1));
  });
  assert.notEqual(data.x[1]![0], 1_600_000_007, 'the timestamp was rounded');
  assert.equal(data.warnings?.length, 1);
  assert.match(
    data.warnings![0]!,
    /^feature "ts" is too far from zero for its spread to survive float32, which devices feed the model \(rounding moves a value by up to 0\.\d+ standard deviations\): .*subtract an offset/,
  );
  assert.deepEqual(dataWarnings(data, { validationFraction: 0.15, testFraction: 0.2 }), data.warnings, 'the run reports it');
  assert.deepEqual(dataWarnings({ ...data, task: 'regression' }, { validationFraction: 0.15, testFraction: 0.2 }), data.warnings);
  // The fingerprint names the data as written, not as rounded.
  const rounded = parseDataset(text.replace(/^(\d+),/gm, (_, ts: string) => `${Math.fround(Number(ts))},`), { label: 'label' });
  assert.deepEqual(rounded.x, data.x);
  assert.notEqual(rounded.fingerprint, data.fingerprint);
});

test('the shipped data sets are read exactly as written: no feature is rounded, no warning', () => {
  for (const [name, { label }] of Object.entries(SHIPPED_DATASETS)) {
    const path = shippedDatasetPath(name as ShippedDatasetName);
    const data = loadDatasetFile(path, { label });
    assert.deepEqual(data.warnings ?? [], [], name);
    const [header, ...rows] = readFileSync(path, 'utf8').trim().split(/\r?\n/).map((line) => line.split(','));
    const labelIndex = header!.indexOf(label);
    const written = rows.map((cells) => cells.filter((_, i) => i !== labelIndex).map(Number));
    assert.deepEqual(data.x, written, name);
  }
});

test('a number label with a gap written NaN is refused when the task is inferred or regression; said to be classes, or read for an existing model, "None" is a class', () => {
  const csv = (labels: string[]) => `a,b,fault\n${labels.map((label, i) => `${i},${(i * 7) % 5},${label}`).join('\n')}\n`;
  const codes = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? 'None' : i % 3 === 1 ? '101' : '205'));
  // Every such row named (the first, and up to ten more); the way to say "classes" on the CLI and in a job request alike.
  const lines = 'lines 5, 8, 11, 14, 17, 20, 23, 26, 29';
  assert.throws(
    () => parseDataset(csv(codes), { label: 'fault' }),
    (error: Error) =>
      error.message ===
      `data: line 2: the label "fault" is missing ("None") where the other rows hold numbers (and 9 more such rows: ${lines}): drop the rows without a label, or, if "None" is a class, give the task as classification (--task classification, or "task": "classification" in a job request)`,
  );
  // Said to be regression: gaps, with no word of classes (the user ruled them out).
  assert.throws(
    () => parseDataset(csv(codes), { label: 'fault', task: 'regression' }),
    (error: Error) => error.message === `data: line 2: the label "fault" is missing ("None") where the other rows hold numbers (and 9 more such rows: ${lines}): a regression target needs a number on every row: drop those rows`,
  );
  const many = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 'NaN' : String(i)));
  assert.throws(() => parseDataset(csv(many), { label: 'fault', task: 'regression' }), /\(and 13 more such rows: lines 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, and 3 more\): a regression target needs a number on every row: drop those rows$/);
  // A fault code "None" beside 101 and 205: a class, when the user says the label is classes.
  assert.deepEqual(parseDataset(csv(codes), { label: 'fault', task: 'classification' }).classes, ['101', '205', 'None']);
  // The agent's holdout and data read for a registered model: the model's classes are what they are.
  assert.deepEqual(parseDataset(csv(codes), { label: 'fault', features: ['a', 'b'] }).y.slice(0, 3), [2, 0, 1]);
});

test('a number label with a stray text or infinite cell is refused naming its line, when the task is inferred; classes with a text code, or a task given, are not', () => {
  const csv = (labels: string[]) => `a,b,target\n${labels.map((label, i) => `${i},${(i * 7) % 5},${label}`).join('\n')}\n`;
  const measured = Array.from({ length: 60 }, (_, i) => String(25 + ((i * 37) % 280) + i / 10));
  for (const cell of ['abc', 'Infinity', 'inf', '-']) {
    const labels = measured.map((value, i) => (i === 8 ? cell : value));
    assert.throws(
      () => parseDataset(csv(labels), { label: 'target' }),
      new RegExp(`^UserError: data: line 10: the label "target" is "${cell}", not a finite number, where the other rows hold numbers: fix or drop that row, or, if the labels are classes, give the task as classification \\(--task classification, or "task": "classification" in a job request\\)$`),
    );
    assert.throws(() => parseDataset(csv(labels), { label: 'target', task: 'regression' }), /line 10: regression label ".*" is not a finite float32 number/);
    assert.equal(parseDataset(csv(labels), { label: 'target', task: 'classification' }).task, 'classification');
  }
  // Two strays: both named.
  assert.throws(
    () => parseDataset(csv(measured.map((value, i) => (i === 8 ? 'abc' : i === 30 ? 'n.a.' : value))), { label: 'target' }),
    /^UserError: data: line 10: the label "target" is "abc", not a finite number, where the other rows hold numbers \(and 1 more such row: line 32\): fix or drop those rows, /,
  );
  // More than a few such cells are no strays: text classes with numbers among them.
  assert.equal(parseDataset(csv(measured.map((value, i) => (i % 10 === 0 ? `kind${i}` : value))), { label: 'target' }).task, 'classification');
  // A text value that repeats is a class, not a typo: "ungraded" beside grades, on 5 of 400 rows.
  const grades = Array.from({ length: 400 }, (_, i) => (i % 80 === 3 ? 'ungraded' : String(0.5 * (1 + (i % 10)))));
  assert.equal(parseDataset(csv(grades), { label: 'target' }).classes.at(-1), 'ungraded');
  // A text code beside a handful of integer classes is a class too, and beside integer codes that repeat as codes do.
  const codes = Array.from({ length: 30 }, (_, i) => (i === 4 ? 'unknown' : String(i % 3)));
  assert.deepEqual(parseDataset(csv(codes), { label: 'target' }).classes, ['0', '1', '2', 'unknown']);
  const productCodes = Array.from({ length: 1240 }, (_, i) => (i === 7 ? 'other' : String(100 + (i % 30))));
  assert.equal(parseDataset(csv(productCodes), { label: 'target' }).classes.length, 31);
});

test('a quoted number with spaces inside its quotes (" 7 ") reads as the number, as an unquoted one with spaces around it does', () => {
  const quoted = parseDataset('x,y,label\n" 7 ",1,a\n"2.5 ", 3 ,b\n', { label: 'label' });
  assert.deepEqual(quoted.x, [[7, 1], [2.5, 3]]);
  assert.deepEqual(quoted.fingerprint, parseDataset('x,y,label\n7,1,a\n2.5,3,b\n', { label: 'label' }).fingerprint);
});

test('a quoted label with spaces inside its quotes (" a ") is the class a, as a quoted number is the number: one class, not two', () => {
  const spaced = parseDataset('x,label\n1," a "\n2,a\n3,"b\t"\n', { label: 'label' });
  assert.deepEqual([spaced.classes, spaced.y], [['a', 'b'], [0, 0, 1]]);
  assert.deepEqual(spaced.fingerprint, parseDataset('x,label\n1,a\n2,a\n3,b\n', { label: 'label' }).fingerprint);
  assert.throws(() => parseDataset('x,label\n1,"  "\n2,a\n', { label: 'label' }), /^UserError: data: line 2: the label "label" is empty$/);
});

test('a file with two byte order marks (a tool added its own) names its first column without them', () => {
  const dataset = parseDataset('\uFEFF\uFEFFx,label\n1,a\n2,b\n', { label: 'label' });
  assert.deepEqual(dataset.featureNames, ['x']);
});

test('classes that differ only in letter case, spacing or invisible characters are named in a warning (each stays a class of its own); a holdout is not warned', () => {
  const csv = 'x,kind\n1,setosa\n2,SETOSA\n3,Iris  virginica\n4,iris virginica\n5,other\n6,other\n7,other\u200b\n';
  const dataset = parseDataset(csv, { label: 'kind' });
  assert.deepEqual(dataset.classes.length, 6);
  assert.deepEqual(dataset.warnings?.filter((warning) => warning.includes('letter case')), [
    'the label "kind" has classes that differ only in letter case, spacing or invisible characters ("Iris  virginica" and "iris virginica"; "SETOSA" and "setosa"; "other" and "other\\u200b"): each is a class of its own to the model; if they are one class, write it one way',
  ]);
  assert.deepEqual(parseDataset('x,kind\n1,a\n2,b\n', { label: 'kind' }).warnings?.filter((warning) => warning.includes('letter case')), []);
  assert.deepEqual(parseDataset(csv, { label: 'kind', features: ['x'], minClasses: 1 }).warnings?.filter((warning) => warning.includes('letter case')), []);
});

test('names and classes are compared as text: a decomposed "Bär" (a + U+0308) is the class and the column "Bär", read composed', () => {
  const composed = 'B\u00e4r';
  const decomposed = 'Ba\u0308r';
  // Rows written on two machines: one class, not two that look the same everywhere they are shown.
  const dataset = parseDataset(`x,esp\u00e8ce\n1,${composed}\n2,${decomposed}\n3,Baum\n4,Baum\n`, { label: 'espe\u0300ce' });
  assert.deepEqual(dataset.classes, ['Baum', composed]);
  assert.deepEqual(dataset.y, [1, 1, 0, 0]);
  assert.equal(dataset.labelName, 'esp\u00e8ce');
  // A header saved decomposed is found by the name typed composed; a model's features likewise.
  const header = parseDataset(`${decomposed},kind\n1,a\n2,b\n`, { label: 'kind', features: [composed] });
  assert.deepEqual(header.featureNames, [composed]);
  // Two columns whose names are one text are one name written twice.
  assert.throws(() => parseDataset(`${composed},${decomposed},kind\n1,2,a\n2,3,b\n`, { label: 'kind' }), /column "B\u00e4r" appears twice in the header/);
});

test('a name that differs from a column only by an invisible character shows the difference in the refusal', () => {
  assert.throws(
    () => parseDataset('x,kind\u200b\n1,a\n2,b\n', { label: 'kind' }),
    (error: unknown) => error instanceof UserError && error.message === 'data: no label column "kind" (columns: "x", "kind\\u200b")',
  );
});

test('data rows ending in a comma the header does not have are named as trailing commas, not as a title line', () => {
  assert.throws(
    () => parseDataset('x,y,label\n1,2,a,\n3,4,b,\n', { label: 'label' }, 'data.csv'),
    (error: unknown) =>
      error instanceof UserError &&
      error.message === 'data.csv: not a valid CSV file: line 2 ends with a comma (an empty field 4 the header, line 1, does not have): remove the trailing commas from the data rows',
  );
  // A row of bare separators wider than the header (a spreadsheet's empty row) is named as such.
  assert.throws(
    () => parseDataset('x,y,label\n1,2,a\n,,,\n3,4,b\n', { label: 'label' }, 'data.csv'),
    (error: unknown) =>
      error instanceof UserError && error.message === "data.csv: not a valid CSV file: line 3 holds only separators (4 empty fields, the header, line 1, has 3): delete that line (a spreadsheet's empty row)",
  );
  // An extra field with something in it is still a row of the wrong width.
  assert.throws(
    () => parseDataset('x,y,label\n1,2,a\n3,4,b,5\n', { label: 'label' }, 'data.csv'),
    (error: unknown) => error instanceof UserError && error.message === 'data.csv: not a valid CSV file: line 3 has 4 fields, and line 1, read as the header, has 3',
  );
});

test('a semicolon- or tab-separated header is named as such below blank lines, with commas inside its quoted names, and with a comma in a name of a TSV', () => {
  const named = (separator: string) => (error: unknown) => error instanceof UserError && error.message.startsWith(`data.csv: the header is separated by ${separator}, not commas`);
  const rows = (sep: string, decimal = '.') => Array.from({ length: 6 }, (_, i) => [`${i}${decimal}5`, `${i % 3}${decimal}25`, i % 2 ? 'x' : 'y'].join(sep)).join('\n');
  assert.throws(() => parseDataset(`\n\na;b;label\n${rows(';')}\n`, { label: 'label' }, 'data.csv'), named('semicolons'));
  assert.throws(() => parseDataset(`\na;b;label\n${rows(';', ',')}\n`, { label: 'label' }, 'data.csv'), named('semicolons'));
  assert.throws(() => parseDataset(`\r\na\tb\tlabel\r\n${rows('\t')}\r\n`, { label: 'label' }, 'data.csv'), named('tabs'));
  assert.throws(() => parseDataset(`"Länge, Kelch (cm)";b;label\n${rows(';')}\n`, { label: 'label' }, 'data.csv'), named('semicolons'));
  assert.throws(() => parseDataset(`len, cm\tb\tlabel\n${rows('\t')}\n`, { label: 'label' }, 'data.csv'), named('tabs'));
  // A German export: unquoted commas in the names and decimal commas below, as many of each on both lines.
  assert.throws(() => parseDataset(`Länge, cm;Breite, cm;label\n${rows(';', ',')}\n`, { label: 'label' }, 'data.csv'), named('semicolons'));
  assert.throws(() => parseDataset(`Länge, cm\tBreite, cm\tlabel\n${rows('\t', ',')}\n`, { label: 'label' }, 'data.csv'), named('tabs'));
  // Comma-separated files whose names hold a semicolon are read as they are.
  const good = Array.from({ length: 6 }, (_, i) => `${i}.5,${i % 3}.25,${i % 2 ? 'x' : 'y'}`).join('\n');
  for (const header of ['"a;b",c,label', 'a;b,c,label']) {
    assert.deepEqual(parseDataset(`${header}\n${good}\n`, { label: 'label' }, 'data.csv').featureNames.length, 2, header);
  }
});

test('a text class spelled as a missing value ("NA", "?") is named in a warning with its lines; the class is kept', () => {
  const rows = Array.from({ length: 30 }, (_, i) => `${i}.5,${(i * 7) % 11}.25,${i === 4 || i === 9 ? 'NA' : i % 2 ? 'setosa' : 'virginica'}`);
  const data = parseDataset(`a,b,species\n${rows.join('\n')}\n`, { label: 'species' }, 'data.csv');
  assert.deepEqual(data.classes, ['NA', 'setosa', 'virginica']);
  assert.deepEqual(
    (data.warnings ?? []).filter((warning) => warning.includes('missing value')),
    ['the label "species" has "NA", the way a missing value is written, as a class: line 6 (and 1 more such row: line 11); if those rows have no label, drop them (a class of that name is kept as written)'],
  );
  // Given as classification (as the refusal of a number label with "NA" gaps advises when "NA" is a class): no warning.
  assert.deepEqual(parseDataset(`a,b,species\n${rows.join('\n')}\n`, { label: 'species', task: 'classification' }, 'data.csv').warnings?.filter((w) => w.includes('missing value')), []);
  // "None" beside "Mild" and "Severe" is a class, not a gap.
  const severity = Array.from({ length: 30 }, (_, i) => `${i}.5,${(i * 7) % 11}.25,${['None', 'Mild', 'Severe'][i % 3]}`);
  assert.deepEqual(parseDataset(`a,b,severity\n${severity.join('\n')}\n`, { label: 'severity' }, 'data.csv').warnings?.filter((w) => w.includes('missing value')), []);
  // Read for an existing model (a holdout), its classes are what they are: no warning.
  assert.deepEqual(parseDataset(`a,b,species\n${rows.join('\n')}\n`, { label: 'species', features: ['a', 'b'], classNames: ['NA', 'setosa', 'virginica'] } as never, 'data.csv').warnings, []);
});
