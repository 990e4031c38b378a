import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { Holdout } from '../../agent/holdout.ts';
import { benchmarkSideBySide } from '../../agent/model-benchmark.ts';
import { modelInterfaceProblem, modelProbeProblem } from '../../agent/model-interface.ts';
import type { InstalledModel } from '../../agent/model-store.ts';
import { runModel } from '../../agent/onnx-runner.ts';
import { createOnnxSession, type OnnxSession } from '../../agent/onnx-session.ts';
import { toPredictions } from '../../agent/predict-rows.ts';
import type { ServingModel } from '../../agent/serving-model.ts';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { exportOnnx, ONNX_OUTPUT } from '../../shared/artifact/onnx-export.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../artifact/fixtures.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isAnswerTo, isBenchmarkFor, isOutcome, signedVariant, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';
import { predictApiServer } from './predict-api-server.ts';

/**
 * A signed model whose *declared* output ([batch, 3]) agrees with its manifest while its real
 * output does not: onnxruntime only warns, and shape inference cannot see a width computed from
 * the input. Such a model is refused before any slot changes, and no run of it is ever read as an
 * answer (/v1/predict, shadow runs, the benchmark).
 */

const { onnx } = onnxProto;
const network = randomNetwork(11, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
const regressor = randomNetwork(12, CLASSIFIER_FEATURES.length, [{ units: 4, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 50, scale: 10 });
const manifest = { name: 'sensor-classifier', version: '5', task: 'classification', features: CLASSIFIER_FEATURES, labels: ['a', 'b', 'c'] } as unknown as Manifest;
const regressionManifest = { ...manifest, task: 'regression', labels: [] } as unknown as Manifest;
const ROWS = [
  [1, 2, 3, 4, 5, 6, 7],
  [7, 6, 5, 4, 3, 2, 1],
];

/** The classifier with its last node writing `before_output`, and `extend` appending the nodes that write `output` (still declared [batch, 3]). */
function rewired(extend: (graph: OnnxTypes.IGraphProto) => void): Uint8Array {
  const model = onnx.ModelProto.decode(exportOnnx(network));
  const graph = model.graph! as OnnxTypes.IGraphProto;
  graph.node!.at(-1)!.output = ['before_output'];
  extend(graph);
  return onnx.ModelProto.encode(model).finish();
}

/**
 * The probabilities cut by a Slice whose end is computed from the input,
 * int64(reduce(features) * scale + offset) (clamped to 0 .. 3 by the Slice), so shape inference
 * cannot know the width: onnxruntime reports the graph's declared [batch, 3]. The cut comes
 * `after` the 3 probabilities (real width 3 + end), or `alone` (real width end).
 */
function slicedAtComputedEnd(reduce: 'ReduceMax' | 'ReduceSumSquare', scale: number, offset: number, placement: 'alone' | 'after'): Uint8Array {
  return rewired((graph) => {
    const I64 = onnx.TensorProto.DataType.INT64;
    const F = onnx.TensorProto.DataType.FLOAT;
    const INT = onnx.AttributeProto.AttributeType.INT;
    graph.initializer!.push(
      { name: 'zero', dims: [1], dataType: I64, int64Data: [0] },
      { name: 'one', dims: [1], dataType: I64, int64Data: [1] },
      { name: 'fscale', dims: [1], dataType: F, floatData: [scale] },
      { name: 'foffset', dims: [1], dataType: F, floatData: [offset] },
    );
    graph.node!.push(
      { name: 'reduce', opType: reduce, input: ['features'], output: ['reduced'], attribute: [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [0, 1] }, { name: 'keepdims', type: INT, i: 0 }] },
      { name: 'scale', opType: 'Mul', input: ['reduced', 'fscale'], output: ['scaled'] },
      { name: 'offset', opType: 'Add', input: ['scaled', 'foffset'], output: ['ends_f'] },
      { name: 'toint', opType: 'Cast', input: ['ends_f'], output: ['ends'], attribute: [{ name: 'to', type: INT, i: I64 }] },
      { name: 'cut', opType: 'Slice', input: ['before_output', 'zero', 'ends', 'one'], output: [placement === 'alone' ? ONNX_OUTPUT : 'cut'] },
    );
    if (placement === 'after') graph.node!.push({ name: 'widen', opType: 'Concat', input: ['before_output', 'cut'], output: [ONNX_OUTPUT], attribute: [{ name: 'axis', type: INT, i: 1 }] });
  });
}

/** `k` columns of the probabilities, cut at int64(ReduceMax(features) * 0 + k): `after` the 3 probabilities (real width 3 + k), or alone (real width k). */
const computedWidth = (k: number, placement: 'alone' | 'after') => slicedAtComputedEnd('ReduceMax', 0, k, placement);

/** Real output [batch, 0] (the reviewer's repro): every row would be answered as class "a" with no probabilities. */
const emptyRows = computedWidth(0, 'alone');
/** Real output [batch, 5]: two values no label names. */
const fiveWide = computedWidth(2, 'after');
/**
 * Real output [batch, 3] on a batch of zeros (what the load probe feeds) and [batch, 0] on any
 * other: the Slice ends at int64(3 - ReduceSumSquare(features) * 1e6), clamped to 0 .. 3. No
 * one-row probe can see this; every run on real rows must.
 */
const zerosOnly = slicedAtComputedEnd('ReduceSumSquare', -1e6, 3, 'alone');
/** Real output [batch, 6], written plainly: onnxruntime's shape inference sees this width, so the declared-interface check already refuses it. */
const sixWide = rewired((graph) => {
  graph.initializer!.push({ name: 'ten', dims: [1], dataType: onnx.TensorProto.DataType.FLOAT, floatData: [10] });
  graph.node!.push(
    { name: 'scale', opType: 'Mul', input: ['before_output', 'ten'], output: ['scaled'] },
    { name: 'widen', opType: 'Concat', input: ['before_output', 'scaled'], output: [ONNX_OUTPUT], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] },
  );
});

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

async function session(t: TestContext, bytes: Uint8Array): Promise<OnnxSession> {
  const created = await createOnnxSession(bytes);
  t.after(() => created.release());
  return created;
}

test('runModel, given the manifest width, throws on a real output of another width, naming the model, its dims and the width expected', async (t) => {
  const features = new Float32Array(14).fill(1);
  const empty = await session(t, emptyRows);
  const wide = await session(t, fiveWide);
  // The declared metadata agrees with the manifest: only a run shows the difference.
  assert.equal(modelInterfaceProblem(empty, manifest), null, 'the [batch, 0] model declares [batch, 3]');
  assert.equal(modelInterfaceProblem(wide, manifest), null, 'the [batch, 5] model declares [batch, 3]');
  await assert.rejects(runModel(empty, features, 2, 7, { width: 3, version: '5', role: 'active' }), {
    name: 'ModelOutputError',
    message: 'the active model 5 gave "output" [2, 0] for 2 rows: 0 values per row, but its manifest says 3 ([2, 3])',
  });
  await assert.rejects(runModel(wide, features, 2, 7, { width: 3 }), { message: 'the model gave "output" [2, 5] for 2 rows: 5 values per row, but its manifest says 3 ([2, 3])' });
  // Written plainly, a wider output is visible to shape inference: the declared-interface check refuses it, and a run too.
  const plain = await session(t, sixWide);
  assert.equal(modelInterfaceProblem(plain, manifest), 'model.onnx gives "output" 6 values per row, but the manifest\'s classification task needs 3');
  await assert.rejects(runModel(plain, features, 2, 7, { width: 3 }), { message: 'the model gave "output" [2, 6] for 2 rows: 6 values per row, but its manifest says 3 ([2, 3])' });
  // Honest models of either task pass, and give what they gave before.
  const honest = await session(t, exportOnnx(network));
  const rows = await runModel(honest, features, 2, 7, { width: 3 });
  assert.deepEqual(rows, await runModel(honest, features, 2, 7), 'the check changes no value');
  assert.deepEqual(rows.map((row) => row.length), [3, 3]);
  const values = await runModel(await session(t, exportOnnx(regressor)), features, 2, 7, { width: 1 });
  assert.deepEqual(values.map((row) => row.length), [1, 1], 'a regressor gives one value per row');
});

test('the load probe runs one row: a model whose real width differs from its declared one is refused, honest classifiers and regressors pass', async (t) => {
  assert.equal(
    await modelProbeProblem(await session(t, emptyRows), manifest),
    'model.onnx gives "output" [1, 0] when run on one row, although it declares [batch, 3]; the manifest\'s classification task needs [1, 3]',
  );
  assert.equal(
    await modelProbeProblem(await session(t, fiveWide), manifest),
    'model.onnx gives "output" [1, 5] when run on one row, although it declares [batch, 3]; the manifest\'s classification task needs [1, 3]',
  );
  assert.equal(await modelProbeProblem(await session(t, exportOnnx(network)), manifest), null, 'an honest classifier passes the probe');
  const regression = await session(t, exportOnnx(regressor));
  assert.equal(modelInterfaceProblem(regression, regressionManifest), null, 'the regressor declares [batch, 1]');
  assert.equal(await modelProbeProblem(regression, regressionManifest), null, 'an honest regressor passes the probe (width 1, no labels)');
  // A regressor given a classifier's manifest gives 1 value, not 3: a probe that skipped regression widths would not see it either way.
  assert.match((await modelProbeProblem(regression, manifest)) ?? 'passed', /gives "output" \[1, 1\] when run on one row/);
});

test('toPredictions never answers with a class a row does not hold: a row of another width than the manifest throws', () => {
  assert.throws(() => toPredictions(manifest, [[], []]), /output row 0 holds 0 values, but the manifest's classification task needs 3/);
  assert.throws(() => toPredictions(manifest, [[0.1, 0.2, 0.7], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]), /output row 1 holds 6 values/);
  assert.throws(() => toPredictions(regressionManifest, [[1, 2]]), /output row 0 holds 2 values, but the manifest's regression task needs 1/);
  assert.deepEqual(toPredictions(manifest, [[0.1, 0.7, 0.2]]), [{ label: 'b', index: 1, probabilities: [0.1, 0.7, 0.2] }]);
  assert.deepEqual(toPredictions(regressionManifest, [[42]]), [{ value: 42 }]);
});

const serving = (s: OnnxSession, version: string): ServingModel => ({ ref: { model: manifest.name, version, sha256: `sha-${version}` }, manifest, lease: { session: s, release: async () => {} } });

test('/v1/predict on an active model whose real output is not its manifest\'s width: a clear 500 (model, dims, width), never 200 with a made-up class', async (t) => {
  for (const [bytes, dims, width] of [[emptyRows, '[2, 0]', 0], [fiveWide, '[2, 5]', 5]] as const) {
    const { stats, predict } = await predictApiServer(t, serving(await session(t, bytes), '5'));
    const answer = await predict(ROWS);
    assert.equal(answer.status, 500, `a model giving ${dims} is not answered as a success: ${JSON.stringify(answer.json)}`);
    assert.deepEqual(answer.json, { error: `the active model 5 gave "output" ${dims} for 2 rows: ${width} values per row, but its manifest says 3 ([2, 3])` });
    assert.deepEqual({ predictions: stats.predictions, errors: stats.errors }, { predictions: 0, errors: 2 }, 'the two rows count as the active model\'s errors');
  }
});

test('a shadow run on a candidate whose real output is not its manifest\'s width counts as shadow errors, never as agreements', async (t) => {
  const { stats, predict } = await predictApiServer(t, serving(await session(t, exportOnnx(network)), '1'), serving(await session(t, fiveWide), '5'));
  const answer = await predict(ROWS);
  assert.equal(answer.status, 200, 'the active model answers');
  assert.deepEqual(answer.json.predictions.map((p: { probabilities: number[] }) => p.probabilities.length), [3, 3]);
  await waitFor(() => stats.shadowErrors + stats.shadowRows > 0, 5000, 'the shadow run');
  assert.deepEqual({ shadowErrors: stats.shadowErrors, shadowRows: stats.shadowRows, shadowAgreements: stats.shadowAgreements }, { shadowErrors: 2, shadowRows: 0, shadowAgreements: 0 });
});

test('the benchmark fails a candidate whose real output is not its manifest\'s width, naming it: no accuracy is scored from rows it does not hold', async (t) => {
  const dir = join(world.dir, 'benchmark-wide');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.onnx'), emptyRows);
  const labelled = { ...world.v1.manifest, files: { ...world.v1.manifest.files, 'model.onnx': { sha256: createHash('sha256').update(emptyRows).digest('hex'), bytes: emptyRows.length } } };
  const model: InstalledModel = { artifactId: artifactId(labelled), manifest: labelled, onnxPath: join(dir, 'model.onnx') };
  const active: InstalledModel = { artifactId: world.v1.id, manifest: world.v1.manifest, onnxPath: join(world.v1.dir, 'model.onnx') };
  const holdout: Holdout = world.holdout;
  const settings = { latencySamples: 5, throughputBatches: 2, batchSize: 4 };
  await assert.rejects(
    benchmarkSideBySide([{ role: 'active', version: '1', model: active }, { role: 'candidate', version: 'wide', model }], holdout, settings),
    /the candidate model wide gave "output" \[64, 0\] for 64 rows: 0 values per row, but its manifest says 3 \(\[64, 3\]\)$/,
  );
  // The honest active model alone still benchmarks (the check does not fail models that agree with their manifest).
  const [result] = await benchmarkSideBySide([{ role: 'candidate', version: '1', model: active }], holdout, settings);
  assert.ok(result && 'accuracy' in result.score && result.score.total === 400, `the active model is scored on all 400 rows: ${JSON.stringify(result?.score)}`);
});

/** v1 with its model.onnx replaced by `bytes`, signed with the server's key and served. */
const signedWith = (name: string, bytes: Uint8Array): Promise<TestArtifact> => signedVariant(world, name, bytes);

const REFUSAL = /^the model cannot run: model\.onnx gives "output" \[1, (0|5)\] when run on one row, although it declares \[batch, 3\]; the manifest's classification task needs \[1, 3\]$/;

test('agent: a signed model whose real output width differs from its declared one is refused as active; the device keeps serving its model', async (t) => {
  const { agent, predict } = await startAgent(t, world, 'real-width-1');
  const first = await world.assign('real-width-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const before = await predict({ rows: ROWS });
  assert.equal(before.status, 200);
  for (const [name, bytes] of [['empty-active', emptyRows], ['wide-active', fiveWide]] as const) {
    const assignment = await world.assign('real-width-1', await signedWith(name, bytes), 'active');
    const report = await world.waitForReport(isAnswerTo(assignment.id));
    assert.equal(report.kind === 'assignment' && report.outcome, 'refused', `${name}: ${JSON.stringify(report)}`);
    assert.match(report.kind === 'assignment' ? (report.reason ?? '') : '', REFUSAL, name);
  }
  await agent.idle();
  assert.deepEqual([agent.slots.active?.sha256, agent.slots.previous, agent.slots.candidate], [world.v1.id, null, null], 'no slot changed');
  const after = await predict({ rows: ROWS });
  assert.deepEqual([after.status, after.json.sha256, after.json.predictions], [200, world.v1.id, before.json.predictions]);
});

test('agent: the same model is refused as a candidate, before the candidate slot changes or a benchmark runs', async (t) => {
  const { agent } = await startAgent(t, world, 'real-width-2');
  const first = await world.assign('real-width-2', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const artifact = await signedWith('empty-candidate', emptyRows);
  const assignment = await world.assign('real-width-2', artifact, 'candidate');
  const answer = await world.waitForReport(isAnswerTo(assignment.id), 60_000);
  await agent.idle();
  assert.equal(answer.kind === 'assignment' && answer.outcome, 'refused', `refused, not installed and benchmarked: ${JSON.stringify(answer)}`);
  assert.match(answer.kind === 'assignment' ? (answer.reason ?? '') : '', REFUSAL);
  assert.deepEqual([agent.slots.active?.sha256, agent.slots.candidate], [world.v1.id, null], 'the candidate slot stays empty');
  assert.equal(world.harness.ingest.reports.filter(isBenchmarkFor(artifact.id, 'real-width-2')).length, 0, 'no benchmark report for the refused model');
});

test('agent: a model that gives its manifest\'s width on the probe row only is installed as a candidate, then its benchmark fails with the reason (no accuracy scored)', async (t) => {
  const { agent } = await startAgent(t, world, 'real-width-3');
  const first = await world.assign('real-width-3', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const artifact = await signedWith('zeros-only-candidate', zerosOnly);
  const assignment = await world.assign('real-width-3', artifact, 'candidate');
  const failed = await world.waitForReport(isOutcome(assignment.id, 'benchmark-failed'), 60_000);
  await agent.idle();
  assert.match(
    failed.kind === 'assignment' ? (failed.reason ?? '') : '',
    /^the candidate model zeros-only-candidate gave "output" \[64, 0\] for 64 rows: 0 values per row, but its manifest says 3 \(\[64, 3\]\)$/,
  );
  assert.equal(world.harness.ingest.reports.filter(isBenchmarkFor(artifact.id, 'real-width-3')).length, 0, 'no benchmark report scores it');
});

test('agent: such a model, once active, answers /v1/predict with a clear 500 naming it, never 200 with class "a" and no probabilities', async (t) => {
  const { agent, predict } = await startAgent(t, world, 'real-width-4', { holdout: undefined });
  const artifact = await signedWith('zeros-only-active', zerosOnly);
  const assignment = await world.assign('real-width-4', artifact, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  await agent.idle();
  const response = await predict({ rows: ROWS });
  assert.equal(response.status, 500, `not a silent wrong answer: ${JSON.stringify(response.json)}`);
  assert.deepEqual(response.json, { error: 'the active model zeros-only-active gave "output" [2, 0] for 2 rows: 0 values per row, but its manifest says 3 ([2, 3])' });
  // The probe's row of zeros still gets what the manifest says: the check is per run, not per model.
  const zeros = await predict({ rows: [[0, 0, 0, 0, 0, 0, 0]] });
  assert.deepEqual([zeros.status, zeros.json.predictions?.[0]?.probabilities?.length], [200, 3]);
});
