/**
 * npm run bench:prune — ODF2NNA over the shipped data sets and the MNIST subset, several seeds
 * each, plus inference latency of the original and pruned models in onnxruntime-node and
 * tfjs-wasm. Writes the "Pruning (bench:prune)" section of BENCHMARKS.md and
 * bench/results/prune.json.
 *
 *   npm run bench:prune -- [--seeds 5] [--datasets iris,wine,breast_cancer,diabetes,mnist]
 *   npm run bench:prune -- --render-only   (rewrite the section from bench/results/prune.json)
 */
import { readFile } from 'node:fs/promises';
import '../agent/ort-telemetry-off.ts';
import * as ort from 'onnxruntime-node';
import type { Dataset } from '../shared/data/dataset.ts';
import { loadDatasetFile } from '../shared/data/dataset.ts';
import { SHIPPED_DATASETS, shippedDatasetPath, type ShippedDatasetName } from '../shared/datasets/index.ts';
import { loadMnistSubset } from '../shared/datasets/mnist.ts';
import { exportOnnx, ONNX_INPUT } from '../shared/artifact/onnx-export.ts';
import { createOnnxSession, ONNX_RUN_PATH } from '../agent/onnx-session.ts';
import { abbaOrder } from '../agent/model-benchmark.ts';
import { flopsPerSample, type DenseNetwork } from '../shared/model/dense-network.ts';
import { initTfjs, tf } from '../shared/model/tfjs-backend.ts';
import { toTfjsModel } from '../shared/model/tfjs-convert.ts';
import { PruneOptionsSchema } from '../server/pruning/options.ts';
import { runOdf2nna } from '../server/pruning/odf2nna.ts';
import type { PruneReport } from '../server/pruning/report.ts';
import type { Score } from '../shared/model/scoring.ts';
import { standardizeRows } from '../server/pruning/standardization.ts';
import {
  describeMachine,
  markdownTable,
  mean,
  median,
  resultsJsonPath,
  std,
  writeBenchmarkSection,
  writeResultsJson,
} from './lib/benchmarks-file.ts';
import { benchArgs, benchUsageError } from './lib/bench-args.ts';

const BENCH_DATASETS = ['iris', 'wine', 'breast_cancer', 'diabetes', 'mnist'];
const args = benchArgs(
  'prune',
  {
    seeds: { type: 'string', default: '5' },
    datasets: { type: 'string', default: BENCH_DATASETS.join(',') },
    /** Re-render the BENCHMARKS.md section from bench/results/prune.json without measuring. */
    'render-only': { type: 'boolean', default: false },
  },
  `--seeds N (1-50, default 5), --datasets ${BENCH_DATASETS.join(',')} (any of them), --render-only`,
);
if (!/^[1-9]\d*$/.test(args.seeds!) || Number(args.seeds) > 50) benchUsageError('prune', `--seeds: a whole number of seeds from 1 to 50, not ${JSON.stringify(args.seeds)}`);
// The flags that choose what to measure, given beside --render-only, would be ignored: refused instead.
const measuringFlags = process.argv.slice(2).filter((arg) => /^--(seeds|datasets)(=|$)/.test(arg)).map((arg) => arg.split('=')[0]);
if (args['render-only'] && measuringFlags.length > 0) {
  benchUsageError('prune', `--render-only re-renders bench/results/prune.json as it was measured: it takes no ${[...new Set(measuringFlags)].join(' or ')}`);
}
const seeds = Array.from({ length: Number(args.seeds) }, (_, i) => i + 1);
const datasetNames = args.datasets!.split(',').map((name) => name.trim());
const unknownDatasets = datasetNames.filter((name) => !BENCH_DATASETS.includes(name));
if (unknownDatasets.length > 0) benchUsageError('prune', `--datasets: unknown ${unknownDatasets.map((name) => JSON.stringify(name)).join(', ')}; the data sets are ${BENCH_DATASETS.join(', ')}`);
const BATCHES = [1, 64, 1024];
/** Batches at which the call-path table times the public run() against the inline one. */
const CALL_PATH_BATCHES = [1, 64];

function loadBenchDataset(name: string): Dataset {
  if (name === 'mnist') return loadMnistSubset();
  if (!(name in SHIPPED_DATASETS)) throw new Error(`unknown data set ${name}`);
  const shipped = SHIPPED_DATASETS[name as ShippedDatasetName];
  return loadDatasetFile(shippedDatasetPath(name as ShippedDatasetName), { label: shipped.label });
}

/** Accuracy in percent, or MSE: the number compared across models (higher is better for accuracy). */
const headline = (score: Score) => ('accuracy' in score ? score.accuracy * 100 : score.mse);
const fmt = (values: number[], digits = 2) => `${mean(values).toFixed(digits)} ± ${std(values).toFixed(digits)}`;

interface DatasetResult {
  name: string;
  task: string;
  reports: PruneReport[];
  networks: { original: DenseNetwork; pruned: DenseNetwork; rows: number[][] };
}

// --- inference latency -----------------------------------------------------------------------
interface LatencyRow {
  dataset: string;
  engine: 'onnxruntime-node' | 'tfjs-wasm';
  batch: number;
  originalMs: number;
  prunedMs: number;
  flopRatio: number;
  originalGflops: number;
  prunedGflops: number;
  /** onnxruntime-node only: one call of a network with a single hidden unit, the per-call floor. */
  floorMs?: number;
}

/** One data set's seed-1 models in onnxruntime-node through the public run() and inline, timed in the same rounds. */
interface CallPathRow {
  dataset: string;
  batch: number;
  originalPublic: number;
  originalInline: number;
  prunedPublic: number;
  prunedInline: number;
}

/** The smallest network with the same inputs and outputs: one hidden unit. Its latency is the runtime's per-call floor. */
function floorNetwork(network: DenseNetwork): DenseNetwork {
  const inputs = network.inputMean.length;
  const last = network.layers.at(-1)!;
  return {
    ...network,
    layers: [
      { inputs, units: 1, weights: new Float32Array(inputs), bias: new Float32Array(1), activation: 'relu' },
      { inputs: 1, units: last.units, weights: new Float32Array(last.units), bias: new Float32Array(last.units), activation: last.activation },
    ],
  };
}

/** Median time of one call, from interleaved rounds (A, B, A, B, ...) so drift hits both alike. */
async function timeInterleaved(fns: (() => Promise<unknown>)[], rounds = 9): Promise<number[]> {
  const calibrate = async (fn: () => Promise<unknown>) => {
    let n = 1;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await fn();
      const elapsed = performance.now() - t0;
      if (elapsed > 40 || n >= 1 << 16) return Math.max(1, Math.round((n * 60) / Math.max(elapsed, 1e-3)));
      n *= 2;
    }
  };
  const counts: number[] = [];
  for (const fn of fns) counts.push(await calibrate(fn));
  const times: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const k of abbaOrder(fns.length, r)) {
      const fn = fns[k]!;
      const t0 = performance.now();
      for (let i = 0; i < counts[k]!; i++) await fn();
      times[k]!.push((performance.now() - t0) / counts[k]!);
    }
  }
  return times.map(median);
}

interface SavedResults {
  machine: string;
  /** When it was measured (ISO); absent in results from before it was kept. */
  date?: string;
  backend: string;
  seeds: number[];
  datasets: { name: string; task: string; reports: PruneReport[] }[];
  latency: LatencyRow[];
  /** How onnxruntime-node sessions ran (agent/onnx-session.ts); absent in results from before it existed. */
  ortRunPath?: string;
  callPath?: CallPathRow[];
}

/** Runs ODF2NNA on every data set and seed, then times the seed-1 models. */
async function measure(): Promise<SavedResults> {
  const backend = await initTfjs();
  console.error(`bench:prune on ${describeMachine()}, tfjs backend ${backend}, seeds ${seeds.join(',')}`);
  const results: DatasetResult[] = [];
  for (const name of datasetNames) {
    const dataset = loadBenchDataset(name);
    const reports: PruneReport[] = [];
    let networks: DatasetResult['networks'] | undefined;
    for (const seed of seeds) {
      const result = await runOdf2nna(dataset, PruneOptionsSchema.parse({ seed }), backend);
      reports.push(result.report);
      networks ??= { original: result.general.network, pruned: result.pruned.network, rows: dataset.x };
      result.general.model.dispose();
      result.pruned.model.dispose();
      const r = result.report;
      console.error(
        `${name} seed ${seed}: ε ${r.epsilon} ${r.layers.pruned.join('-')} cut ${(r.pruned.param_cut * 100).toFixed(1)}% ` +
          `test ${headline(r.original.test).toFixed(2)} → ${headline(r.pruned.test).toFixed(2)} in ${r.timing_s.toFixed(1)} s`,
      );
    }
    results.push({ name, task: dataset.task, reports, networks: networks! });
  }

  const latency: LatencyRow[] = [];
  const callPath: CallPathRow[] = [];
  for (const { name, networks } of results) {
    const { original, pruned, rows } = networks;
    const flopRatio = flopsPerSample(original) / flopsPerSample(pruned);
    const width = original.inputMean.length;
    // Sessions as the agent runs them: one thread, as on a small field device (for dense networks
    // this size, intra-op threading costs more in synchronisation than it saves), run inline.
    const sessions = await Promise.all([original, pruned, floorNetwork(original)].map((n) => createOnnxSession(exportOnnx(n))));
    // The package's public run(), for the call-path table.
    const publicSessions = await Promise.all([original, pruned].map((n) => createOnnxSession(exportOnnx(n), undefined, 'public')));
    const tfModels = [original, pruned].map(toTfjsModel);
    for (const batch of BATCHES) {
      const batchRows = Array.from({ length: batch }, (_, i) => rows[i % rows.length]!);
      const feeds = { [ONNX_INPUT]: new ort.Tensor('float32', Float32Array.from(batchRows.flat()), [batch, width]) };
      const [oOrt, pOrt] = await timeInterleaved([() => sessions[0]!.run(feeds), () => sessions[1]!.run(feeds)]);
      const [floorMs] = await timeInterleaved([() => sessions[2]!.run(feeds), () => sessions[1]!.run(feeds)]);
      if (ONNX_RUN_PATH === 'inline' && CALL_PATH_BATCHES.includes(batch)) {
        const [originalPublic, originalInline, prunedPublic, prunedInline] = await timeInterleaved(
          [publicSessions[0]!, sessions[0]!, publicSessions[1]!, sessions[1]!].map((session) => () => session.run(feeds)),
        );
        callPath.push({ dataset: name, batch, originalPublic: originalPublic!, originalInline: originalInline!, prunedPublic: prunedPublic!, prunedInline: prunedInline! });
      }
      const standardized = tf.tensor2d(standardizeRows(batchRows, original), [batch, width]);
      const predict = (model: tf.LayersModel) => async () => {
        const out = model.predict(standardized) as tf.Tensor;
        await out.data();
        out.dispose();
      };
      const [oTf, pTf] = await timeInterleaved([predict(tfModels[0]!), predict(tfModels[1]!)]);
      standardized.dispose();
      for (const [engine, o, p] of [
        ['onnxruntime-node', oOrt, pOrt],
        ['tfjs-wasm', oTf, pTf],
      ] as const) {
        latency.push({
          dataset: name,
          engine,
          batch,
          originalMs: o,
          prunedMs: p,
          flopRatio,
          originalGflops: (flopsPerSample(original) * batch) / (o * 1e6),
          prunedGflops: (flopsPerSample(pruned) * batch) / (p * 1e6),
          floorMs: engine === 'onnxruntime-node' ? floorMs : undefined,
        });
      }
      console.error(`${name} batch ${batch}: ort ${oOrt.toFixed(4)} → ${pOrt.toFixed(4)} ms, tfjs ${oTf.toFixed(4)} → ${pTf.toFixed(4)} ms`);
    }
    tfModels.forEach((m) => m.dispose());
    await Promise.all([...sessions, ...publicSessions].map((s) => s.release()));
  }
  return {
    machine: describeMachine(),
    date: new Date().toISOString(),
    backend,
    seeds,
    datasets: results.map(({ name, task, reports }) => ({ name, task, reports })),
    latency,
    ortRunPath: ONNX_RUN_PATH,
    callPath,
  };
}

/** The saved results --render-only renders; a missing or unreadable file ends the script in one line. */
async function savedResults(): Promise<SavedResults> {
  const path = resultsJsonPath('prune');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as SavedResults;
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'there is no such file: run npm run bench:prune first' : (error as Error).message;
    return benchUsageError('prune', `--render-only: cannot read ${path}: ${reason}`);
  }
}

const saved: SavedResults = args['render-only'] ? await savedResults() : await measure();
if (!args['render-only']) await writeResultsJson('prune', saved);
const { machine, backend, latency } = saved;
const results = saved.datasets;

// --- report ----------------------------------------------------------------------------------
const scoreName = (task: string) => (task === 'classification' ? 'accuracy %' : 'MSE');
const qualityRows = results.map(({ name, task, reports }) => {
  const pick = (f: (r: PruneReport) => Score) => reports.map((r) => headline(f(r)));
  return [
    name,
    scoreName(task),
    fmt(reports.map((r) => r.original.params), 0),
    fmt(reports.map((r) => r.pruned.params), 0),
    fmt(reports.map((r) => r.pruned.param_cut * 100), 1),
    fmt(pick((r) => r.original.test)),
    fmt(pick((r) => r.pruned.test)),
    fmt(pick((r) => r.pruned.test_before_retrain)),
    fmt(pick((r) => r.scratch!.test)),
    fmt(pick((r) => r.l1!.test)),
    reports.map((r) => r.epsilon).join(', '),
    fmt(reports.map((r) => r.timing_s), 1),
  ];
});

const targets: string[] = [];
const check = (ok: boolean, text: string) => targets.push(`- ${ok ? '✅' : '❌'} ${text}`);
for (const { name, task, reports } of results) {
  const better = (a: number, b: number) => (task === 'classification' ? a >= b : a <= b);
  const prunedMean = mean(reports.map((r) => headline(r.pruned.test)));
  const originalMean = mean(reports.map((r) => headline(r.original.test)));
  const scratchMean = mean(reports.map((r) => headline(r.scratch!.test)));
  const l1Mean = mean(reports.map((r) => headline(r.l1!.test)));
  if (task === 'classification') {
    const cut = mean(reports.map((r) => r.pruned.param_cut * 100));
    check(cut >= 70, `${name}: mean parameter cut ${cut.toFixed(1)}% (target ≥ 70%)`);
    check(prunedMean >= originalMean - 0.5, `${name}: mean pruned accuracy ${prunedMean.toFixed(2)}% vs original ${originalMean.toFixed(2)}% (target ≥ original − 0.5)`);
  }
  check(
    better(prunedMean, scratchMean) && better(prunedMean, l1Mean),
    `${name}: pruned ${prunedMean.toFixed(2)} vs scratch ${scratchMean.toFixed(2)} and L1 ${l1Mean.toFixed(2)} (${scoreName(task)}; target: pruned at least as good as both)`,
  );
}
// "On average" across the data sets too: the mean relative score difference, positive when the
// pruned model is better (accuracy higher, MSE lower), so accuracy and MSE sets can be averaged.
const relativeGain = (task: string, pruned: number, baseline: number) =>
  task === 'classification' ? (pruned - baseline) / baseline : (baseline - pruned) / baseline;
const gains = (pick: (r: PruneReport) => Score) =>
  results.map(({ task, reports }) =>
    relativeGain(task, mean(reports.map((r) => headline(r.pruned.test))), mean(reports.map((r) => headline(pick(r))))),
  );
const [vsScratch, vsL1] = [mean(gains((r) => r.scratch!.test)), mean(gains((r) => r.l1!.test))];
check(
  vsScratch >= 0 && vsL1 >= 0,
  `all data sets: pruned vs scratch ${(vsScratch * 100).toFixed(2)}%, vs L1 ${(vsL1 * 100).toFixed(2)}% on average (mean relative score difference, positive = pruned better; target ≥ 0)`,
);
const mnist = results.find((r) => r.name === 'mnist');
if (mnist) {
  const worst = Math.max(...mnist.reports.map((r) => r.timing_s));
  check(worst < 300, `mnist: slowest pipeline ${worst.toFixed(0)} s (target < 300 s)`);
}
for (const row of latency.filter((r) => r.batch === 64 && r.engine === 'onnxruntime-node')) {
  const speedup = row.originalMs / row.prunedMs;
  check(speedup >= 0.7 * row.flopRatio, `${row.dataset}: onnxruntime speedup at batch 64 ${speedup.toFixed(2)}× vs FLOP ratio ${row.flopRatio.toFixed(2)}× (target ≥ 0.7 × FLOP ratio = ${(0.7 * row.flopRatio).toFixed(2)}×)`);
}

// Reports saved before they had training_threads were trained on one thread.
const trainingThreads = results.map((r) => `${r.name} ${[...new Set(r.reports.map((report) => report.training_threads ?? 1))].join('/')}`).join(', ');
const body = [
  `Machine: ${machine}.${saved.date ? ` ${saved.date.slice(0, 10)}.` : ''} tfjs backend for training: ${backend}. ${saved.seeds.length} seeds per data set (${saved.seeds.join(', ')}); default settings (3×128 ReLU general model trained with L1 ${PruneOptionsSchema.parse({}).l1Input} on the first hidden kernel and ${PruneOptionsSchema.parse({}).l1} on the others, ε sweep ${PruneOptionsSchema.parse({}).epsilons.join(', ')}, tolerance 0.5 points and ${PruneOptionsSchema.parse({}).toleranceLossFraction * 100}% cross-entropy / 2% MSE). Mean ± standard deviation over seeds; every score is on the held-out test split. MNIST is the 10,000-digit subset of the npm package \`mnist\`. Training threads (report.json \`training_threads\`, chosen by the default \`trainingThreads: auto\`): ${trainingThreads}.`,
  '',
  '### Size and quality',
  '',
  markdownTable(
    ['data set', 'score', 'params original', 'params pruned', 'cut %', 'original', 'pruned', 'pruned before retrain', 'scratch', 'L1', 'chosen ε', 'wall s'],
    qualityRows,
  ),
  '',
  '### Inference latency (original vs pruned, seed 1 models)',
  '',
  `onnxruntime-node sessions run as the agent runs them (agent/onnx-session.ts): one thread, ${saved.ortRunPath === 'inline' ? 'each call inline through the native binding, without the public run()\'s trip around the event loop' : 'through the public run()'}. ` +
    'Median milliseconds per call over interleaved rounds in an order that alternates (original, pruned; pruned, original; ...); speedup = original / pruned; GFLOP/s counts 2 FLOPs per weight and 1 per unit (its bias) per sample, as the manifest counts FLOPs. The per-call floor is one onnxruntime-node call of a network with a single hidden unit and the same inputs and outputs (the call, tensor marshalling and copying, and the Sub that centres inputs whose means are too large to fold); the CPU matrix kernels of onnxruntime work in blocks of 16 output columns, so for wide inputs (the 784 MNIST pixels) that one unit costs as much as 16 and the floor overstates the fixed cost. "speedup above the floor" = (original − floor) / (pruned − floor), the compute-only speedup, shown for context — the target is checked on the plain speedup.',
  '',
  markdownTable(
    ['data set', 'engine', 'batch', 'original ms', 'pruned ms', 'speedup', 'FLOP ratio', 'speedup / FLOP ratio', 'GFLOP/s original', 'GFLOP/s pruned', 'per-call floor ms', 'speedup above the floor'],
    latency.map((r) => [
      r.dataset,
      r.engine,
      String(r.batch),
      r.originalMs.toFixed(4),
      r.prunedMs.toFixed(4),
      `${(r.originalMs / r.prunedMs).toFixed(2)}×`,
      `${r.flopRatio.toFixed(2)}×`,
      (r.originalMs / r.prunedMs / r.flopRatio).toFixed(2),
      r.originalGflops.toFixed(2),
      r.prunedGflops.toFixed(2),
      r.floorMs === undefined ? '' : r.floorMs.toFixed(4),
      r.floorMs === undefined ? '' : r.prunedMs > r.floorMs * 1.05 ? `${((r.originalMs - r.floorMs) / (r.prunedMs - r.floorMs)).toFixed(2)}×` : 'at the floor',
    ]),
  ),
  '',
  ...(saved.callPath?.length
    ? [
        '### onnxruntime-node call path (seed 1 models)',
        '',
        'The same models timed in the same interleaved rounds (in an order that alternates) through the package\'s public `InferenceSession.run()`, which defers each call to a later turn of the event loop, and inline through its native binding, as the agent runs them (agent/onnx-session.ts). Median milliseconds per call.',
        '',
        markdownTable(
          ['data set', 'batch', 'original public', 'original inline', 'pruned public', 'pruned inline', 'pruned public / inline', 'speedup public', 'speedup inline'],
          saved.callPath.map((r) => [
            r.dataset,
            String(r.batch),
            r.originalPublic.toFixed(4),
            r.originalInline.toFixed(4),
            r.prunedPublic.toFixed(4),
            r.prunedInline.toFixed(4),
            `${(r.prunedPublic / r.prunedInline).toFixed(2)}×`,
            `${(r.originalPublic / r.prunedPublic).toFixed(2)}×`,
            `${(r.originalInline / r.prunedInline).toFixed(2)}×`,
          ]),
        ),
        '',
      ]
    : []),
  '### Targets',
  '',
  ...targets,
].join('\n');

await writeBenchmarkSection('Pruning (bench:prune)', body);
console.log(body);
