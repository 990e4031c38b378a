import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Holdout, alignHoldout } from '../../agent/holdout.ts';
import { abbaOrder, benchmarkSideBySide } from '../../agent/model-benchmark.ts';
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
  assert.equal(holdout.forTask('regression').task, 'regression');
  const { manifest } = await makeArtifact(t, { seed: 5 });
  const classifier = { ...manifest, labels: ['1', '2', '3'] };
  const aligned = alignHoldout(holdout, classifier);
  assert.deepEqual([aligned.task, aligned.rows, aligned.y.slice(0, 4)], ['classification', 30, [0, 1, 2, 0]]);
  // A model whose data wrote its classes "1.0", "2.0", "3.0" (numeric classes are named "1", ... now) still reads this holdout.
  assert.deepEqual(alignHoldout(holdout, { ...manifest, labels: ['1.0', '2.0', '3.0'] }).y.slice(0, 4), [0, 1, 2, 0]);
  // Labels a model does not know, or text as a regression target, are a one-line error.
  assert.throws(() => alignHoldout(holdout, { ...manifest, labels: ['a', 'b', 'c'] }), /holdout label "1" is not one of the model's classes \(a, b, c\)/);
  const texts = Holdout.fromText('f0,kind\n1,cat\n2,dog\n', 'kind');
  assert.throws(() => texts.forTask('regression'), /regression label "cat" is not a finite float32 number/);
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
