import * as ort from 'onnxruntime-node';
import type { ModelBenchmark, Role } from '../shared/protocol/payloads.ts';
import { scorePredictions } from '../shared/model/scoring.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { crashPoint } from './crash-points.ts';
import { alignHoldout } from './holdout.ts';
import { onnxSource, type InstalledModel } from './model-store.ts';
import { readVerifiedOnnx } from './verified-onnx.ts';
import { runModel } from './onnx-runner.ts';

export interface BenchmarkSettings {
  /** Single-row inferences timed for the latency percentiles. */
  latencySamples: number;
  /** Batches of `batchSize` rows timed for throughput. */
  throughputBatches: number;
  batchSize: number;
}

export const DEFAULT_BENCHMARK_SETTINGS: BenchmarkSettings = { latencySamples: 500, throughputBatches: 100, batchSize: 64 };
const WARMUP_RUNS = 10;
const SCORING_CHUNK = 1024;

/**
 * Benchmarks models on the device's holdout in one run, one after the other with identical
 * settings: each is loaded in a fresh onnxruntime session (load time, RSS increase), scored on
 * the whole holdout, timed at batch 1 (p50/p95/p99) and at batch `batchSize` (rows/s).
 */
export async function benchmarkSideBySide(
  models: readonly { role: Role; version: string; model: InstalledModel }[],
  holdout: Dataset,
  settings: BenchmarkSettings = DEFAULT_BENCHMARK_SETTINGS,
): Promise<ModelBenchmark[]> {
  const results: ModelBenchmark[] = [];
  for (const { role, version, model } of models) results.push(await benchmarkModel(role, version, model, holdout, settings));
  return results;
}

async function benchmarkModel(role: Role, version: string, model: InstalledModel, dataset: Dataset, settings: BenchmarkSettings): Promise<ModelBenchmark> {
  const holdout = alignHoldout(dataset, model.manifest);
  const { nFeatures, rows } = holdout;
  const rssBefore = process.memoryUsage.rss();
  const loadStart = performance.now();
  const session = await ort.InferenceSession.create(await readVerifiedOnnx(onnxSource(model)), { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const loadTimeMs = performance.now() - loadStart;
  crashPoint('benchmark:after-load');
  try {
    const predictions: number[][] = [];
    for (let start = 0; start < rows; start += SCORING_CHUNK) {
      const count = Math.min(SCORING_CHUNK, rows - start);
      predictions.push(...(await runModel(session, holdout.features.subarray(start * nFeatures, (start + count) * nFeatures), count, nFeatures)));
    }
    const score = scorePredictions(holdout.task, predictions, holdout.y);
    const fullScore =
      'accuracy' in score
        ? { accuracy: score.accuracy, correct: Math.round(score.accuracy * rows), total: rows }
        : { mse: score.mse, r2: score.r2, total: rows };

    const row = (i: number) => holdout.features.slice((i % rows) * nFeatures, ((i % rows) + 1) * nFeatures);
    for (let i = 0; i < WARMUP_RUNS; i++) await runModel(session, row(i), 1, nFeatures);
    const latencies = new Float64Array(settings.latencySamples);
    for (let i = 0; i < settings.latencySamples; i++) {
      const input = row(i);
      const start = performance.now();
      await runModel(session, input, 1, nFeatures);
      latencies[i] = performance.now() - start;
    }
    latencies.sort();

    const batch = new Float32Array(settings.batchSize * nFeatures);
    for (let i = 0; i < settings.batchSize; i++) batch.set(row(i), i * nFeatures);
    await runModel(session, batch, settings.batchSize, nFeatures);
    const throughputStart = performance.now();
    for (let i = 0; i < settings.throughputBatches; i++) await runModel(session, batch, settings.batchSize, nFeatures);
    const throughputSeconds = (performance.now() - throughputStart) / 1000;

    return {
      model: model.manifest.name,
      version,
      sha256: model.artifactId,
      role,
      score: fullScore,
      latencyMs: { p50: percentile(latencies, 0.5), p95: percentile(latencies, 0.95), p99: percentile(latencies, 0.99), samples: settings.latencySamples },
      batchSize: settings.batchSize,
      throughputRowsPerSecond: (settings.throughputBatches * settings.batchSize) / Math.max(throughputSeconds, 1e-9),
      loadTimeMs,
      rssIncreaseBytes: process.memoryUsage.rss() - rssBefore,
    };
  } finally {
    await session.release();
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}
