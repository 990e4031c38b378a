import assert from 'node:assert/strict';
import { createRequire, findSourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { tempDir } from '../helpers/cli.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { forward, parameterCount, type DenseNetwork } from '../../shared/model/dense-network.ts';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';
import { PruneOptionsSchema, retrainEpochsOf, retrainLearningRateOf } from '../../server/pruning/options.ts';
import { chooseEpsilon, runOdf2nna, selectionWarnings, type Odf2nnaResult } from '../../server/pruning/odf2nna.ts';
import type { SweepEntry } from '../../server/pruning/report.ts';
import { trainingThreadCount } from '../../server/pruning/training-thread.ts';
import { availableParallelism } from 'node:os';

let backend: string;
let iris: Odf2nnaResult;

before(async () => {
  backend = await initTfjs();
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  iris = await runOdf2nna(dataset, PruneOptionsSchema.parse({ units: 32, epochs: 80, seed: 3 }), backend);
});

test('the tfjs backend is the wasm one (or native tfjs-node when installed)', () => {
  assert.ok(['wasm', 'tensorflow'].includes(backend), `backend ${backend}`);
});

test('under --enable-source-maps, tfjs loads without its 20 MB of source maps; this project\'s own frames stay mapped', () => {
  assert.equal(process.sourceMapsEnabled, true, 'npm test (and tsx) run with source maps on');
  const require = createRequire(import.meta.url);
  for (const id of ['@tensorflow/tfjs', '@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-wasm']) {
    assert.equal(findSourceMap(require.resolve(id)), undefined, `${id}'s source map was read`);
  }
  // The file this test runs from (its source through tsx, or npm test's bundle of it) as node loaded it.
  const running = runningFile();
  assert.ok(findSourceMap(running) ?? findSourceMap(running.startsWith('file:') ? fileURLToPath(running) : `file://${running}`), `the project's code keeps its source map (${running})`);
  assert.match(new Error('here').stack ?? '', /odf2nna\.test\.ts:\d+/, 'a stack frame of this test still names its TypeScript file');
});

test('ODF2NNA on iris: a smaller network that keeps the accuracy', () => {
  const { report } = iris;
  assert.equal(report.task, 'classification');
  assert.deepEqual(report.layers.original, [32, 32, 32, 3]);
  assert.equal(report.sweep.length, 6);
  const retrained = report.sweep.filter((entry) => entry.retrained);
  assert.ok(retrained.length >= 1);
  assert.ok(report.sweep.some((e) => e.params === report.pruned.params && e.retrained));
  assert.ok(report.pruned.params < report.original.params, 'pruning removed parameters');
  report.layers.pruned.slice(0, -1).forEach((units) => assert.ok(units >= 1 && units <= 32));
  assert.equal(report.pruned.params, parameterCount(iris.pruned.network));
  assert.equal(report.original.params, parameterCount(iris.general.network));
  assert.ok('accuracy' in report.original.test && report.original.test.accuracy >= 0.85, 'the general model learned iris');
  assert.ok('accuracy' in report.pruned.test && report.pruned.test.accuracy >= 0.85, 'the pruned model still classifies iris');
  assert.ok(report.scratch && 'accuracy' in report.scratch.test);
  assert.ok(report.l1 && 'accuracy' in report.l1.test);
  assert.equal(report.data.split.train + report.data.split.validation + report.data.split.test, 150);
});

test('larger ε never keeps more units, and the smallest ε stays close before retraining', () => {
  const { sweep, original } = iris.report;
  for (let i = 1; i < sweep.length; i++) {
    sweep[i]!.layers.forEach((units, l) => assert.ok(units <= sweep[i - 1]!.layers[l]!, `ε ${sweep[i]!.epsilon} layer ${l}`));
  }
  const first = sweep[0]!;
  assert.ok('accuracy' in first.test_before_retrain && 'accuracy' in original.test);
  assert.ok(
    Math.abs(first.test_before_retrain.accuracy - original.test.accuracy) <= 0.05,
    `ε ${first.epsilon} before retraining: ${first.test_before_retrain.accuracy} vs ${original.test.accuracy}`,
  );
});

test('the chosen ε is the smallest model within tolerance on validation', () => {
  const { report } = iris;
  const chosen = report.sweep.find((entry) => entry.epsilon === report.epsilon)!;
  assert.equal(chosen.params, report.pruned.params);
  const within = (e: SweepEntry) => e.within_tolerance === true || e.within_tolerance_before_retrain === true;
  assert.equal(report.pruned.weights, chosen.weights);
  if (within(chosen)) {
    for (const entry of report.sweep.filter(within)) assert.ok(entry.params >= chosen.params);
    // Retraining stops at the first architecture within tolerance: everything smaller was tried and failed.
    for (const entry of report.sweep.filter((e) => e.params < chosen.params)) assert.equal(within(entry), false);
    for (const entry of report.sweep.filter((e) => e.params > chosen.params)) assert.equal(entry.retrained, false);
  } else {
    assert.ok(report.sweep.every((e) => e.retrained), 'with nothing within tolerance every ε was retrained');
  }
});

test('chooseEpsilon prefers the smallest within tolerance, retrained or as transferred, and falls back to the best score, then the smaller model', () => {
  const entry = (epsilon: number, params: number, accuracy: number, within: boolean, before: { accuracy: number; within: boolean } = { accuracy, within: false }, loss = 0.1): SweepEntry => ({
    epsilon,
    layers: [],
    params,
    flops: 0,
    param_cut: 0,
    retrained: true,
    validation_before_retrain: { accuracy: before.accuracy },
    validation: { accuracy },
    validation_loss: loss,
    validation_loss_before_retrain: loss,
    test_before_retrain: { accuracy: before.accuracy },
    test: { accuracy },
    within_tolerance: within,
    within_tolerance_before_retrain: before.within,
    weights: !within && before.within ? 'transferred' : 'retrained',
  });
  const smallest = chooseEpsilon([entry(0.1, 100, 0.9, true), entry(0.3, 50, 0.9, true), entry(0.5, 10, 0.5, false)]);
  assert.equal(smallest.entry.epsilon, 0.3);
  assert.equal(smallest.warning, undefined);
  // Retraining lost a validation row at ε 0.3, whose transferred weights were within tolerance: ε 0.3 as transferred.
  const transferred = chooseEpsilon([entry(0.1, 100, 0.9, true), entry(0.3, 50, 0.85, false, { accuracy: 0.9, within: true }), entry(0.5, 10, 0.5, false)]);
  assert.equal(transferred.entry.epsilon, 0.3);
  assert.match(transferred.selection, /keeps the transferred weights/);
  const fallback = chooseEpsilon([entry(0.1, 100, 0.8, false), entry(0.3, 50, 0.7, false)]);
  assert.equal(fallback.entry.epsilon, 0.1);
  assert.match(fallback.selection, /no ε stayed within tolerance/);
  assert.match(fallback.warning ?? '', /^no ε stayed within tolerance of the original on validation \(.*\), so ε 0\.1 was chosen for its validation score; the model may score below the original: compare the sweep, and sweep smaller ε \(--epsilon: a smaller ε keeps more units\), or prune with a larger network or more --epochs$/);
  // Equal validation scores outside tolerance: the lower validation loss, then the smaller model.
  assert.equal(chooseEpsilon([entry(0.05, 300, 0.97, false), entry(0.1, 200, 0.97, false), entry(0.5, 20, 0.97, false), entry(0.7, 5, 0.95, false)]).entry.epsilon, 0.5);
  assert.equal(chooseEpsilon([entry(0.1, 200, 0.97, false, undefined, 0.06), entry(0.5, 20, 0.97, false, undefined, 0.1)]).entry.epsilon, 0.1);
  // A single ε: that ε, with a warning when it is outside tolerance.
  assert.deepEqual(chooseEpsilon([entry(0.3, 50, 0.9, true)]), { entry: entry(0.3, 50, 0.9, true), selection: 'single ε given' });
  const single = chooseEpsilon([entry(0.9, 5, 0.6, false)]);
  assert.equal(single.entry.epsilon, 0.9);
  assert.match(single.warning ?? '', /^ε 0\.9 is outside tolerance of the original on validation; the model may score below the original: try a smaller --epsilon \(it keeps more units\), or leave it out to sweep, or prune with a larger network or more --epochs$/);
});

test('a model within tolerance before retraining and outside after it (breast_cancer, seed 14) ships its transferred weights, rather than a larger model', async () => {
  // Retraining keeps its epoch of lowest validation loss; here that takes ε 0.5 out of tolerance,
  // and no ε is within tolerance retrained: without the transferred weights, no model would be.
  const dataset = loadDatasetFile(shippedDatasetPath('breast_cancer'), { label: 'diagnosis' });
  const result = await runOdf2nna(dataset, PruneOptionsSchema.parse({ seed: 14, baselines: false }), backend);
  try {
    const { report } = result;
    const chosen = report.sweep.find((entry) => entry.epsilon === report.epsilon)!;
    assert.equal(chosen.within_tolerance, false, 'retrained, ε ' + chosen.epsilon + ' is outside tolerance');
    assert.equal(chosen.within_tolerance_before_retrain, true, 'transferred, it is within');
    assert.equal(report.pruned.weights, 'transferred');
    assert.match(report.selection, /^smallest model within tolerance of the original on validation; retraining took it out of tolerance, so it keeps the transferred weights/);
    // Every smaller model is outside tolerance both ways, and the report's scores are the transferred weights'.
    for (const entry of report.sweep.filter((e) => e.params < chosen.params)) {
      assert.deepEqual([entry.within_tolerance, entry.within_tolerance_before_retrain], [false, false], `ε ${entry.epsilon}`);
    }
    assert.ok(chosen.params < report.sweep[0]!.params, 'a smaller model than the smallest ε\'s');
    assert.deepEqual(report.pruned.validation, chosen.validation_before_retrain);
    assert.deepEqual(report.pruned.test, chosen.test_before_retrain);
    assert.notDeepEqual(chosen.validation, chosen.validation_before_retrain, 'the retrained weights score otherwise');
    assert.equal(parameterCount(result.pruned.network), chosen.params);
    assert.deepEqual(report.warnings.filter((warning) => warning.startsWith('no ε kept')), []);
  } finally {
    result.general.model.dispose();
    result.pruned.model.dispose();
  }
});

test('a validation split too small to resolve the tolerance is called out in the report', () => {
  const defaults = PruneOptionsSchema.parse({});
  const [warning] = selectionWarnings('classification', 27, defaults);
  assert.match(warning ?? '', /27 rows: one row is 3\.7 accuracy points, more than the 0\.5-point tolerance, so the choice of ε is noisy; compare the sweep \(--full-sweep retrains every ε\)$/);
  // A full sweep was asked for already: not advised again.
  assert.match(selectionWarnings('classification', 27, PruneOptionsSchema.parse({ fullSweep: true }))[0] ?? '', /the choice of ε is noisy; compare the sweep$/);
  assert.match(selectionWarnings('classification', 27, defaults, true)[0] ?? '', /the choice of ε is noisy; compare the sweep$/, 'every ε retrained anyway (none within tolerance): no hint to retrain them');
  assert.deepEqual(selectionWarnings('classification', 1500, defaults), [], '1500 rows resolve 0.07 points');
  assert.deepEqual(selectionWarnings('regression', 27, defaults), [], 'MSE is not counted in rows');
  assert.deepEqual(selectionWarnings('classification', 27, PruneOptionsSchema.parse({ epsilons: [0.3] })), [], 'a single ε is not a choice');
  // iris (seed 3) has 24 validation rows, and the run's report carries the warning.
  assert.equal(iris.report.warnings.length, 1);
  assert.equal(iris.report.warnings[0]!.endsWith(' (--full-sweep retrains every ε)'), !iris.report.sweep.every((entry) => entry.retrained), 'the hint only when some ε was not retrained');
});

test('a single ε prunes at that ε alone; regression reports MSE and R²', async () => {
  const diabetes = loadDatasetFile(shippedDatasetPath('diabetes'), { label: 'progression' });
  const result = await runOdf2nna(
    diabetes,
    PruneOptionsSchema.parse({ units: 24, epochs: 60, epsilons: [0.3], baselines: false, seed: 5 }),
    backend,
  );
  try {
    const { report } = result;
    assert.equal(report.task, 'regression');
    assert.equal(report.epsilon, 0.3);
    assert.equal(report.sweep.length, 1);
    assert.equal(report.scratch, null);
    const { original, pruned } = report;
    assert.ok('r2' in pruned.test && 'r2' in original.test && pruned.test.mse > 0);
    assert.ok(original.test.r2 > 0.2, `general model R² ${original.test.r2}`);
    assert.ok(pruned.test.r2 > 0.2, `pruned model R² ${pruned.test.r2}`);
  } finally {
    result.general.model.dispose();
    result.pruned.model.dispose();
  }
});

test('retrainEpochs 0 ships the transferred model as is', async () => {
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ units: 16, epochs: 10, epsilons: [0.6], retrainEpochs: 0, baselines: false, seed: 2 });
  const result = await runOdf2nna(dataset, options, backend);
  try {
    const [entry] = result.report.sweep;
    assert.deepEqual(entry!.validation, entry!.validation_before_retrain);
    assert.deepEqual(result.report.pruned.test, result.report.pruned.test_before_retrain);
    assert.equal(result.report.pruned.weights, 'transferred', 'nothing retrained them');
  } finally {
    result.general.model.dispose();
    result.pruned.model.dispose();
  }
});

test('a feature constant over the training rows is ignored: its weights are exactly zero in the general and the pruned model, so another value (a device\'s) changes no prediction', async (t) => {
  // Iris with a column that is 7 on every row, as a sensor fixed during data collection.
  const [header, ...lines] = readFileSync(shippedDatasetPath('iris'), 'utf8').trim().split('\n');
  const path = join(await tempDir(t), 'iris-fixed.csv');
  writeFileSync(path, [`fixed,${header}`, ...lines.map((line) => `7,${line}`)].join('\n'));
  const dataset = loadDatasetFile(path, { label: 'species' });
  const column = dataset.featureNames.indexOf('fixed');
  assert.equal(column, 0);
  const options = PruneOptionsSchema.parse({ units: 16, epochs: 30, epsilons: [0.5], baselines: false, seed: 4 });
  const result = await runOdf2nna(dataset, options, backend);
  try {
    for (const [name, network] of [['general', result.general.network], ['pruned', result.pruned.network]] as [string, DenseNetwork][]) {
      const first = network.layers[0]!;
      const weights: number[] = Array.from(first.weights.subarray(column * first.units, (column + 1) * first.units));
      assert.deepEqual(weights, new Array(first.units).fill(0), `${name}: the weights reading the constant column`);
      const rows = dataset.x.slice(0, 30);
      for (const value of [8, -1e6, 1e30]) {
        assert.deepEqual(forward(network, rows.map((row): number[] => row.map((x, i): number => (i === column ? value : x)))), forward(network, rows), `${name}, fixed = ${value}`);
      }
    }
  } finally {
    result.general.model.dispose();
    result.pruned.model.dispose();
  }
});

test('absolute ε mode compares variability with ε itself', async () => {
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ units: 16, epochs: 10, epsilons: [1e9], epsilonMode: 'absolute', baselines: false });
  const result = await runOdf2nna(dataset, options, backend);
  try {
    assert.deepEqual(result.report.layers.pruned, [1, 1, 1, 3], 'a huge absolute ε leaves only the most variable unit per layer');
  } finally {
    result.general.model.dispose();
    result.pruned.model.dispose();
  }
});

test('a run turns the event loop every epoch: a signal handler, a timer or a message does not wait for the training to end', async () => {
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ units: 8, epochs: 20, epsilons: [0.5], retrainEpochs: 2, baselines: false, seed: 1 });
  const trainEpochs: number[] = [];
  let seenAt: number | undefined;
  // Due at once: it runs at the first turn of the event loop.
  const timer = setTimeout(() => (seenAt = trainEpochs.length), 0);
  const result = await runOdf2nna(dataset, options, backend, (event) => {
    if (event.phase === 'train' && event.detail?.startsWith('epoch')) trainEpochs.push(event.done);
  });
  clearTimeout(timer);
  result.general.model.dispose();
  result.pruned.model.dispose();
  assert.ok(trainEpochs.length > 2, `trained ${trainEpochs.length} epochs`);
  assert.ok(seenAt !== undefined && seenAt < trainEpochs.length, `the timer ran after ${seenAt} of ${trainEpochs.length} epochs`);
});

test('no tensors leak across a run', async () => {
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ units: 8, epochs: 5, epsilons: [0.2, 0.5], retrainEpochs: 2 });
  const beforeCount = tf.memory().numTensors;
  const result = await runOdf2nna(dataset, options, backend);
  result.general.model.dispose();
  result.pruned.model.dispose();
  assert.equal(tf.memory().numTensors, beforeCount);
});

test('the light retraining never runs longer than the general model trained', () => {
  assert.equal(retrainEpochsOf(PruneOptionsSchema.parse({})), 60, 'the default 200 epochs leave the default 60');
  assert.equal(retrainEpochsOf(PruneOptionsSchema.parse({ epochs: 20 })), 20);
  assert.equal(retrainEpochsOf(PruneOptionsSchema.parse({ epochs: 20, retrainEpochs: 40 })), 40, 'an explicit budget is kept');
  assert.equal(retrainEpochsOf(PruneOptionsSchema.parse({ retrainEpochs: 0 })), 0);
});

test('the light retraining runs at half the learning rate, of the default or of one given', () => {
  assert.equal(retrainLearningRateOf(PruneOptionsSchema.parse({})), 5e-4);
  assert.equal(retrainLearningRateOf(PruneOptionsSchema.parse({ learningRate: 0.01 })), 0.005);
  assert.equal(retrainLearningRateOf(PruneOptionsSchema.parse({ learningRate: 0.01, retrainLearningRate: 0.002 })), 0.002, 'an explicit rate is kept');
});

test('two training threads train exactly what one does: the same sweep, choice, weights and baselines, the next ε retrained beside each used only when needed', async () => {
  // Sizes from small to large (units 8): seed 7 fails ε 0.7 and 0.5 (one pair: the one retrained
  // beside is used), is within at 0.3 and drops 0.2, retrained beside it; seed 1 fails 0.7 and is
  // within at 0.5, its pair.
  const cases = [
    { name: 'iris', label: 'species', seed: 7, retrained: [0.7, 0.5, 0.3] },
    { name: 'iris', label: 'species', seed: 1, retrained: [0.7, 0.5] },
  ] as const;
  for (const { name, label, seed, retrained } of cases) {
    const dataset = loadDatasetFile(shippedDatasetPath(name), { label });
    const runs = [];
    for (const trainingThreads of [1, 2]) {
      const result = await runOdf2nna(dataset, PruneOptionsSchema.parse({ units: 8, epochs: 15, retrainEpochs: 5, seed, trainingThreads }), backend);
      result.general.model.dispose();
      result.pruned.model.dispose();
      runs.push(result);
    }
    const [one, two] = runs as [Odf2nnaResult, Odf2nnaResult];
    const label_ = `${name} seed ${seed}`;
    assert.equal(one.report.training_threads, 1);
    assert.equal(two.report.training_threads, 2, `${label_}: the second thread trained`);
    const { timing_s: _t1, phase_timing_s: _p1, training_threads: _n1, ...sameOne } = one.report;
    const { timing_s: _t2, phase_timing_s: _p2, training_threads: _n2, ...sameTwo } = two.report;
    assert.deepEqual(sameTwo, sameOne, `${label_}: the report`);
    assert.deepEqual(two.pruned.network, one.pruned.network, `${label_}: the shipped weights`);
    const retrainedEpsilons = two.report.sweep.filter((entry) => entry.retrained).map((entry) => entry.epsilon);
    assert.deepEqual(retrainedEpsilons.sort(), [...retrained].sort(), `${label_}: the ε retrained`);
  }
});

test('a second training thread that cannot train as this one does (another tfjs backend) is not used: the run trains on one thread', async () => {
  const dataset = loadDatasetFile(shippedDatasetPath('iris'), { label: 'species' });
  const options = PruneOptionsSchema.parse({ units: 16, epochs: 20, retrainEpochs: 5, seed: 2, trainingThreads: 2 });
  const forced = process.env.FLEETPRUNE_TF_BACKEND;
  // The thread reads the environment when it starts (this thread chose its backend before).
  process.env.FLEETPRUNE_TF_BACKEND = backend === 'cpu' ? 'wasm' : 'cpu';
  let result: Odf2nnaResult;
  try {
    result = await runOdf2nna(dataset, options, backend);
  } finally {
    if (forced === undefined) delete process.env.FLEETPRUNE_TF_BACKEND;
    else process.env.FLEETPRUNE_TF_BACKEND = forced;
  }
  result.general.model.dispose();
  result.pruned.model.dispose();
  assert.equal(result.report.training_threads, 1);
  const alone = await runOdf2nna(dataset, { ...options, trainingThreads: 1 }, backend);
  alone.general.model.dispose();
  alone.pruned.model.dispose();
  assert.deepEqual(result.report.sweep, alone.report.sweep);
  assert.deepEqual(result.pruned.network, alone.pruned.network);
});

test('`trainingThreads: auto` uses a second thread only for large data (an epoch of at least 1 GFLOP) on a machine with a second core', () => {
  const twoCores = availableParallelism() >= 2;
  assert.equal(trainingThreadCount('auto', 7000, 134_794), twoCores ? 2 : 1, 'the MNIST subset');
  assert.equal(trainingThreadCount('auto', 398, 37_250), 1, 'breast_cancer');
  assert.equal(trainingThreadCount(1, 7000, 134_794), 1, 'asked for one');
  assert.equal(trainingThreadCount(2, 90, 1000), 2, 'asked for two');
});

test('the ε of a sweep are swept and reported smallest first, however they were given; one given twice is refused', () => {
  assert.deepEqual(PruneOptionsSchema.parse({ epsilons: [0.6, 0.15, 0.4] }).epsilons, [0.15, 0.4, 0.6]);
  assert.deepEqual(PruneOptionsSchema.parse({}).epsilons, [0.05, 0.1, 0.2, 0.3, 0.5, 0.7]);
  assert.throws(() => PruneOptionsSchema.parse({ epsilons: [0.6, 0.15, 0.6] }), /ε 0\.6 is given twice/);
});

/** The file of the calling frame as loaded (not as its source map names it). */
function runningFile(): string {
  const original = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_error, frames) => frames;
    const frames = new Error().stack as unknown as NodeJS.CallSite[];
    return frames[1]!.getFileName()!;
  } finally {
    Error.prepareStackTrace = original;
  }
}
