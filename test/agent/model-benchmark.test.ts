import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Holdout, alignHoldout } from '../../agent/holdout.ts';
import { abbaOrder, benchmarkSideBySide, ModelBenchmarkError, SLOW_RUN_BUSY_SHARE, SLOW_RUN_FACTOR, SLOW_RUN_VERDICT_MS, SlowRunGuard, startRunClock } from '../../agent/model-benchmark.ts';
import { slowInference } from './slow-inference.ts';
import type { InstalledModel } from '../../agent/model-store.ts';
import { exportOnnx } from '../../shared/artifact/onnx-export.ts';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { scorePredictions } from '../../shared/model/scoring.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../artifact/fixtures.ts';
import { makeArtifact } from '../server/helpers/artifacts.ts';

const SETTINGS = { latencySamples: 20, throughputBatches: 4, batchSize: 8 };

/** A holdout CSV of `rows` rows over the classifier features, labelled 1, 2, 3 in turn. */
function numberedClassHoldout(rows: number): Holdout {
  const lines = [[...CLASSIFIER_FEATURES, 'kind'].join(',')];
  for (let r = 0; r < rows; r++) lines.push([...CLASSIFIER_FEATURES.map((_, c) => ((r * 7 + c * 3) % 11) / 5 - 1), (r % 3) + 1].join(','));
  return Holdout.fromText(`${lines.join('\n')}\n`, 'kind', 'holdout.csv');
}

function installed(dir: string, manifest: Manifest): InstalledModel {
  return { artifactId: artifactId(manifest), manifest, onnxPath: join(dir, 'model.onnx') };
}

test("the holdout's labels are read for the model's task, not guessed: 30 rows of classes 1, 2, 3 score a classifier", async (t) => {
  const holdout = numberedClassHoldout(30);
  // From the labels alone, 30 rows of three integers could be either task: the model decides.
  const { manifest } = await makeArtifact(t, { seed: 5 });
  assert.equal(holdout.forModel({ ...manifest, task: 'regression' }).task, 'regression');
  const classifier = { ...manifest, labels: ['1', '2', '3'] };
  const aligned = alignHoldout(holdout, classifier);
  assert.deepEqual([aligned.task, aligned.rows, aligned.y.slice(0, 4)], ['classification', 30, [0, 1, 2, 0]]);
  // A model whose data wrote its classes "1.0", "2.0", "3.0" (numeric classes are named "1", ... now) still reads this holdout.
  assert.deepEqual(alignHoldout(holdout, { ...manifest, labels: ['1.0', '2.0', '3.0'] }).y.slice(0, 4), [0, 1, 2, 0]);
  // Labels a model does not know, or text as a regression target, are a one-line error.
  assert.throws(() => alignHoldout(holdout, { ...manifest, labels: ['a', 'b', 'c'] }), /^Error: holdout\.csv: label "1" \(10 rows, the first at line 2\) is not one of the model's classes \(a, b, c\)$/);
  // "row N" is the file's line, blank lines counted, as in the reader's own messages; a quoted
  // label's spaces are no part of the class, as a quoted feature's are no part of its number.
  const spaced = Holdout.fromText('f0,f1,f2,f3,y\n1,2,3,4," a "\n\n1,2,3,4,d\n1,2,3,4,d\n', 'y');
  const known = { ...manifest, features: ['f0', 'f1', 'f2', 'f3'], labels: ['a', 'b', 'c'] };
  assert.throws(() => alignHoldout(spaced, known), /^Error: holdout: label "d" \(2 rows, the first at line 4\) is not one of the model's classes \(a, b, c\)$/);
  assert.deepEqual(alignHoldout(Holdout.fromText('f0,f1,f2,f3,y\n1,2,3,4," a "\n1,2,3,4,"c\t"\n', 'y'), known).y, [0, 2]);
  // A model with a text class names every class as written: a site whose holdout holds only its
  // numeric-looking classes ("01" and "1") scores them as those two classes, not as one "1".
  const codes = { ...manifest, features: ['f0'], labels: ['01', '1', 'x'] };
  const someCodes = Holdout.fromText('f0,kind\n1,01\n2,1\n3,01\n', 'kind', 'site.csv');
  assert.deepEqual(alignHoldout(someCodes, codes).y, [0, 1, 0]);
  assert.throws(() => alignHoldout(Holdout.fromText('f0,kind\n1,1.0\n', 'kind', 'site.csv'), codes), /^Error: site\.csv: label "1\.0" \(1 row, the first at line 2\) is not one of the model's classes \(01, 1, x\)$/);
  // The same file read for a model of numeric classes is read by value; each model reads it its own
  // way, in either order (the holdout keeps what it read per model).
  assert.deepEqual(alignHoldout(someCodes, { ...codes, labels: ['1', '2'] }).y, [0, 0, 0]);
  const numericFirst = Holdout.fromText('f0,kind\n1,01\n2,1\n3,01\n', 'kind', 'site.csv');
  assert.deepEqual(alignHoldout(numericFirst, { ...codes, labels: ['1', '2'] }).y, [0, 0, 0]);
  assert.deepEqual(alignHoldout(numericFirst, codes).y, [0, 1, 0]);
  // Classes of more than 15 significant digits are kept as written in training: so they are here.
  const long = { ...codes, labels: ['01', '1', '12345678901234567'] };
  assert.deepEqual(alignHoldout(Holdout.fromText('f0,kind\n1,01\n2,1\n', 'kind', 'site.csv'), long).y, [0, 1]);
  assert.throws(() => alignHoldout(Holdout.fromText('f0,kind\n1,1.0\n', 'kind', 'site.csv'), long), /label "1\.0" .* is not one of the model's classes/);
  const texts = Holdout.fromText('f0,kind\n1,cat\n2,dog\n', 'kind');
  assert.throws(() => texts.forModel({ task: 'regression', features: ['f0'] }), /regression label "cat" is not a finite float32 number/);
});

test('a holdout reads only the columns a model needs: a timestamp, a site name or an empty cell elsewhere does not stop the agent', async (t) => {
  const { manifest } = await makeArtifact(t, { seed: 5 });
  const classifier = { ...manifest, labels: ['1', '2', '3'] };
  const header = ['recorded_at', ...[...CLASSIFIER_FEATURES].reverse(), 'site', 'notes', 'kind'];
  const lines = [header.join(',')];
  for (let r = 0; r < 6; r++) lines.push(['2026-03-01T09:00:00Z', ...[...CLASSIFIER_FEATURES].reverse().map((_, c) => r * 10 + c), '"osaka, north"', r === 2 ? '' : 'ok', (r % 3) + 1].join(','));
  const holdout = Holdout.fromText(`${lines.join('\n')}\n`, 'kind', 'holdout.csv');
  const aligned = alignHoldout(holdout, classifier);
  assert.deepEqual([aligned.rows, aligned.nFeatures, aligned.y], [6, CLASSIFIER_FEATURES.length, [0, 1, 2, 0, 1, 2]]);
  // Row 1 in the model's feature order (f0 … f6), though the file lists them reversed.
  assert.deepEqual([...aligned.features.subarray(CLASSIFIER_FEATURES.length, 2 * CLASSIFIER_FEATURES.length)], CLASSIFIER_FEATURES.map((_, c) => 10 + (CLASSIFIER_FEATURES.length - 1 - c)));
  // A column the model does read must still hold numbers, and the error names it.
  const broken = Holdout.fromText(`f0,f1,f2,f3,f4,f5,f6,kind\n1,2,3,4,5,6,x,1\n1,2,3,4,5,6,7,2\n`, 'kind', 'holdout.csv');
  assert.throws(() => alignHoldout(broken, classifier), /holdout\.csv: line 2, column "f6": "x" is not a finite number/);
  // What no model can read still stops the agent at start, on one line.
  assert.throws(() => Holdout.fromText('f0,f1\n1,2\n', 'kind', 'holdout.csv'), /holdout\.csv: no label column "kind"/);
  assert.throws(() => Holdout.fromText('f0,kind\n1,\n', 'kind', 'holdout.csv'), /holdout\.csv: line 2: the label "kind" is empty/);
});

test('a holdout of one class scores a classifier, and one constant integer target a regressor', async (t) => {
  const { manifest } = await makeArtifact(t, { seed: 5 });
  const rows = (label: (r: number) => string, n: number) => [['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'kind'].join(','), ...Array.from({ length: n }, (_, r) => [...CLASSIFIER_FEATURES.map((_, c) => r + c / 10), label(r)].join(','))].join('\n');
  // A site that only ever sees class 2.
  const oneClass = Holdout.fromText(rows(() => '2', 20), 'kind', 'site.csv');
  assert.deepEqual(alignHoldout(oneClass, { ...manifest, labels: ['1', '2', '3'] }).y, Array(20).fill(1));
  // Zero defects on every row, and a single row: a regressor's target, whatever the labels look like.
  const regressor = { ...manifest, task: 'regression' as const, labels: [] };
  assert.deepEqual(alignHoldout(Holdout.fromText(rows(() => '0', 73), 'kind', 'site.csv'), regressor).y, Array(73).fill(0));
  assert.deepEqual(alignHoldout(Holdout.fromText(rows(() => '151', 1), 'kind', 'site.csv'), regressor).y, [151]);
});

test('side-by-side benchmark: every model is warmed up before any is timed, and the timing alternates their order (ABBA)', async (t) => {
  assert.deepEqual([abbaOrder(2, 0), abbaOrder(2, 1), abbaOrder(2, 2), abbaOrder(1, 1)], [[0, 1], [1, 0], [0, 1], [0]]);
  const holdout = numberedClassHoldout(40);
  const a = await makeArtifact(t, { seed: 1 });
  const b = await makeArtifact(t, { seed: 2, units: 16 });
  const models = [
    { role: 'active' as const, version: '1', model: installed(a.dir, { ...a.manifest, labels: ['1', '2', '3'] }) },
    { role: 'candidate' as const, version: '2', model: installed(b.dir, { ...b.manifest, labels: ['1', '2', '3'] }) },
  ];
  const results = await benchmarkSideBySide(models, holdout, SETTINGS);
  assert.deepEqual(results.map((r) => [r.role, r.version, r.latencyMs.samples, r.batchSize]), [['active', '1', 20, 8], ['candidate', '2', 20, 8]]);
  for (const result of results) {
    assert.ok('accuracy' in result.score && result.score.total === 40);
    assert.ok(result.latencyMs.p50 > 0 && result.latencyMs.p50 <= result.latencyMs.p95 && result.latencyMs.p95 <= result.latencyMs.p99);
    assert.ok(result.throughputRowsPerSecond > 0);
  }
});

test('a candidate whose runs take seconds where the active model takes milliseconds fails the benchmark after two such runs, not after holding the device up for every row', async (t) => {
  const a = await makeArtifact(t, { seed: 4 });
  const b = await makeArtifact(t, { seed: 5 });
  const models = [
    { role: 'active' as const, version: '1', model: installed(a.dir, { ...a.manifest, labels: ['1', '2', '3'] }) },
    { role: 'candidate' as const, version: '2', model: installed(b.dir, { ...b.manifest, labels: ['1', '2', '3'] }) },
  ];
  // The second session made (the candidate's) sleeps on every run: a second for 64 rows would be
  // 16 s for a request of 1024, past the floor. 200 rows are four runs.
  slowInference(t, 1000, { sessions: (index) => index === 1 });
  const started = performance.now();
  await assert.rejects(benchmarkSideBySide(models, numberedClassHoldout(200), SETTINGS), (error: Error) => {
    assert.ok(error instanceof ModelBenchmarkError && error.role === 'candidate', String(error));
    assert.match(error.message, new RegExp(`^the candidate model 2 took \\d+ ms to run 64 holdout rows \\(scoring\\), over ${SLOW_RUN_FACTOR} times the active model's [\\d.]+ ms \\(its median\\) \\(2 of its last 2 scoring runs were that slow, \\d+ ms at that pace for a request of 1024 rows\\): not benchmarked further`));
    return true;
  });
  // Two runs (one could be a pause of the process), not all four.
  assert.ok(performance.now() - started < 3500, 'stopped after its second slow run, not four');
});

test('a model that gives non-finite outputs fails the benchmark: NaN is never scored as class 0', async (t) => {
  const { dir, manifest } = await makeArtifact(t, { seed: 3 });
  // Weights of 1e30 overflow to Infinity in the second layer, and softmax(Infinity, ...) is NaN.
  const network = randomNetwork(3, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
  for (const layer of network.layers) (layer.weights = layer.weights.map(() => 1e30)), (layer.bias = layer.bias.map(() => 1e30));
  const onnx = exportOnnx(network);
  await writeFile(join(dir, 'model.onnx'), onnx);
  const files = { ...manifest.files, 'model.onnx': { sha256: createHash('sha256').update(onnx).digest('hex'), bytes: onnx.length } };
  const model = installed(dir, { ...manifest, files, labels: ['1', '2', '3'] });
  await assert.rejects(benchmarkSideBySide([{ role: 'candidate', version: '9', model }], numberedClassHoldout(30), SETTINGS), /the candidate model 9 gives non-finite outputs for 16 of 30 holdout rows/);
});

test('R² of a constant target: 1 for a perfect fit, 0 otherwise (never 0 for both)', () => {
  assert.deepEqual(scorePredictions('regression', [[5], [5]], [5, 5]), { mse: 0, r2: 1 });
  assert.deepEqual(scorePredictions('regression', [[4], [6]], [5, 5]), { mse: 1, r2: 0 });
});

test("a benchmark the active model cannot run names that model: the candidate is not blamed for the active model's column", async (t) => {
  const a = await makeArtifact(t, { seed: 1 });
  const b = await makeArtifact(t, { seed: 2 });
  const labels = ['1', '2', '3'];
  const models = [
    // The active model reads a column this site's holdout does not have; the candidate fits it.
    { role: 'active' as const, version: '6', model: installed(a.dir, { ...a.manifest, labels, features: [...a.manifest.features, 'humidity'] }) },
    { role: 'candidate' as const, version: '7', model: installed(b.dir, { ...b.manifest, labels }) },
  ];
  await assert.rejects(benchmarkSideBySide(models, numberedClassHoldout(30), SETTINGS), /^Error: the active model 6: holdout\.csv: no column "humidity"/);
  // And a candidate whose classes the holdout's labels are not is named as the candidate.
  models[0] = { ...models[0]!, model: installed(a.dir, { ...a.manifest, labels }) };
  models[1] = { ...models[1]!, model: installed(b.dir, { ...b.manifest, labels: ['x', 'y', 'z'] }) };
  await assert.rejects(benchmarkSideBySide(models, numberedClassHoldout(30), SETTINGS), /^Error: the candidate model 7: holdout\.csv: label "1" \(\d+ rows?, the first at line \d+\) is not one of the model's classes/);
});

test('the slow-run guard: two slow candidate runs among the last three of a phase are the verdict, one is a pause; a run past the verdict time with the process busy is one at once, one with the process stalled is not; the active model is taken at its median', () => {
  const active = { role: 'active' as const, version: '1' };
  const candidate = { role: 'candidate' as const, version: '2' };
  const guard = new SlowRunGuard();
  // The active model: 1 ms a run, but for one paused run of 5 s, which its median leaves out.
  for (const ms of [1, 1, 5000, 1, 1]) guard.check(active, 'latency', 1, ms);
  guard.check(candidate, 'latency', 1, 1500); // slow: a pause, perhaps
  for (let i = 0; i < 3; i++) guard.check(candidate, 'latency', 1, 1); // out of the window
  guard.check(candidate, 'latency', 1, 1500);
  guard.check(candidate, 'latency', 1, 1);
  // Slow every other run is slow again soon: the verdict.
  assert.throws(() => guard.check(candidate, 'latency', 1, 1500), /^Error: the candidate model 2 took 1500 ms to run 1 holdout row \(latency\), over 20 times the active model's 1\.0 ms \(its median\)/);
  // Another phase has strikes of its own; a phase the active model has not run yet holds nothing.
  const other = new SlowRunGuard();
  other.check(candidate, 'scoring', 64, 60_000);
  other.check(active, 'scoring', 64, 2);
  other.check(candidate, 'warm-up', 1, 1500);
  assert.throws(() => other.check(candidate, 'scoring', 64, SLOW_RUN_VERDICT_MS + 1), /took \d+ ms to run 64 holdout rows \(scoring\)/);
  // A run past the verdict time with the process idle through most of it was a stall of the device
  // (a stopped process, a swap storm): one slow run, timed again. A second slow one is the verdict.
  const stalled = new SlowRunGuard();
  for (const ms of [0.012, 0.015, 0.02]) stalled.check(active, 'latency', 1, ms);
  stalled.check(candidate, 'latency', 1, 11_000, 40);
  for (let i = 0; i < 3; i++) stalled.check(candidate, 'latency', 1, 0.02, 0.02);
  stalled.check(candidate, 'latency', 1, SLOW_RUN_VERDICT_MS * 3, SLOW_RUN_BUSY_SHARE * SLOW_RUN_VERDICT_MS * 3 - 1);
  // Sub-millisecond medians keep their digits; a single row's pace is not scaled to a 1024-row request.
  assert.throws(
    () => stalled.check(candidate, 'latency', 1, 1500, 1500),
    (error: Error) => error.message === "the candidate model 2 took 1500 ms to run 1 holdout row (latency), over 20 times the active model's 0.015 ms (its median) (2 of its last 3 latency runs were that slow): not benchmarked further, as its runs would hold up the device's requests that long",
  );
  // Busy for half of it: the device ran the model that long.
  const busy = new SlowRunGuard();
  busy.check(active, 'throughput', 64, 2);
  assert.throws(
    () => busy.check(candidate, 'throughput', 64, 12_000, 6_000),
    /took 12000 ms to run 64 holdout rows \(throughput\), over 20 times the active model's 2\.0 ms \(its median\) \(one run over 10 s with the process busy for 6000 ms of it, so not a stall of the device, 192000 ms at that pace for a request of 1024 rows\)/,
  );
  // Under a second, or as fast per row as a 1024-row request in 2 s, is never slow.
  const quick = new SlowRunGuard();
  quick.check(active, 'throughput', 64, 0.01);
  for (let i = 0; i < 5; i++) quick.check(candidate, 'throughput', 64, 120);
});

test('a run clock counts the CPU the process spent, not the wall time of a wait', async () => {
  const waited = startRunClock();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const idle = waited();
  assert.ok(idle.ms >= 190 && idle.cpuMs < idle.ms / 2, `waiting 200 ms: ${JSON.stringify(idle)}`);
  // Spinning until the process has used 200 ms of CPU (whatever else the machine runs meanwhile):
  // the clock counts that CPU, and no more wall time than passed.
  const spun = startRunClock();
  const cpuAtStart = process.cpuUsage();
  while (process.cpuUsage(cpuAtStart).user < 200_000);
  const busy = spun();
  assert.ok(busy.cpuMs >= 195 && busy.ms >= busy.cpuMs * 0.9, `spinning for 200 ms of CPU: ${JSON.stringify(busy)}`);
});
