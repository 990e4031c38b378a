import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ModelBenchmark, Role } from '../shared/protocol/payloads.ts';
import { scorePredictions } from '../shared/model/scoring.ts';
import { errorMessage } from '../shared/util/errors.ts';
import { crashPoint } from './crash-points.ts';
import { alignHoldout, type AlignedHoldout, type Holdout } from './holdout.ts';
import { onnxSource, type InstalledModel } from './model-store.ts';
import { readVerifiedOnnx } from './verified-onnx.ts';
import { expectedOutput } from './model-interface.ts';
import { runModel, type ExpectedOutput } from './onnx-runner.ts';
import { MAX_ROWS_PER_REQUEST } from './predict-rows.ts';
import { createOnnxSession, type OnnxSession } from './onnx-session.ts';

export interface BenchmarkSettings {
  /** Single-row inferences timed for the latency percentiles. */
  latencySamples: number;
  /** Batches of `batchSize` rows timed for throughput. */
  throughputBatches: number;
  batchSize: number;
}

export const DEFAULT_BENCHMARK_SETTINGS: BenchmarkSettings = { latencySamples: 500, throughputBatches: 100, batchSize: 64 };
const WARMUP_RUNS = 10;
/**
 * Rows scored per run, each run holding the event loop (inference is inline): as many as a timed
 * batch, so a candidate whose work or memory grows with its rows holds up requests, and takes
 * memory, for 64 rows at a time rather than 1024 (a QA candidate held /v1/predict 45 s per
 * 1024-row run, and another took 8.6 GB on them); the few extra calls cost microseconds each.
 */
const SCORING_CHUNK = 64;
/** Inferences run inline (onnx-session.ts) and never yield, so the timing loops give the event loop a turn this often, between samples. */
const YIELD_EVERY_MS = 5;

/**
 * Benchmarks models on the device's holdout in one run, with identical settings and under the
 * same conditions: each is loaded in a fresh onnxruntime session (load time, RSS increase) and
 * scored on the whole holdout; then every session is warmed up before any is timed, and the
 * timing is interleaved (ABBA: each single-row sample and each batch runs every model, in an
 * order that alternates), so neither the process's cold start nor load on the device (requests
 * served meanwhile) falls on one model only. Latency is timed at batch 1 (p50/p95/p99),
 * throughput at batch `batchSize` (rows/s). Sessions run inline (onnx-session.ts), so a timed
 * inference is one turn of the event loop with no other callback inside it; requests are served
 * between samples. An abort of `signal` stops it between samples: it then throws the signal's reason.
 */
export async function benchmarkSideBySide(
  models: readonly { role: Role; version: string; model: InstalledModel }[],
  holdout: Holdout,
  settings: BenchmarkSettings = DEFAULT_BENCHMARK_SETTINGS,
  signal?: AbortSignal,
  hooks: { /** Before the candidate is loaded: from then on a death of the process is the candidate's doing (the agent counts it). */ candidatePhase?: () => Promise<void> } = {},
): Promise<ModelBenchmark[]> {
  const loaded: Loaded[] = [];
  // Each run's time, by phase, of the active model: the candidate's are held to it (SlowRunGuard).
  const guard = new SlowRunGuard();
  try {
    // Each model loaded and scored in turn, the active model first (the caller lists it first), so
    // that the candidate's phase starts only once the active model has done its part.
    for (const entry of models) {
      signal?.throwIfAborted();
      if (entry.role === 'candidate') await hooks.candidatePhase?.();
      const model = await load(entry, holdout);
      loaded.push(model);
      if (entry.role === 'candidate') crashPoint('benchmark:after-load');
      signal?.throwIfAborted();
      try {
        model.score = await score(model, guard, signal);
      } catch (error) {
        // A stop or an interruption between its runs: the signal's reason, no verdict on the model.
        if (signal?.aborted) throw signal.reason;
        // An output of another width than its manifest says, say: that model's failure.
        throw error instanceof ModelBenchmarkError ? error : new ModelBenchmarkError(model.role, errorMessage(error));
      }
    }

    const row = (model: Loaded, i: number) => model.holdout.features.subarray((i % model.holdout.rows) * model.holdout.nFeatures, ((i % model.holdout.rows) + 1) * model.holdout.nFeatures);
    /** One run of `rows` rows of `model`, its time in ms; a candidate's too slow next to the active model's fails the benchmark. */
    const timedRun = async (model: Loaded, input: Float32Array, rows: number, phase: string): Promise<number> => {
      const run = startRunClock();
      await runModel(model.session, input, rows, model.holdout.nFeatures, model.expected);
      const { ms, cpuMs } = run();
      guard.check(model, phase, rows, ms, cpuMs);
      return ms;
    };
    for (let i = 0; i < WARMUP_RUNS; i++) {
      // A turn between warm-up runs too: a slow model's warm-up must not hold requests up ten runs long.
      if (i > 0) await nextTurn();
      signal?.throwIfAborted();
      for (const model of loaded) await timedRun(model, row(model, i), 1, 'warm-up');
    }

    const breather = new Breather(signal);
    const latencies = loaded.map(() => new Float64Array(settings.latencySamples));
    for (let i = 0; i < settings.latencySamples; i++) {
      await breather.maybeYield();
      for (const index of abbaOrder(loaded.length, i)) {
        const model = loaded[index]!;
        latencies[index]![i] = await timedRun(model, row(model, i), 1, 'latency');
      }
    }

    const batches = loaded.map((model) => {
      const batch = new Float32Array(settings.batchSize * model.holdout.nFeatures);
      for (let i = 0; i < settings.batchSize; i++) batch.set(row(model, i), i * model.holdout.nFeatures);
      return batch;
    });
    const seconds = loaded.map(() => 0);
    for (let i = 0; i < settings.throughputBatches; i++) {
      await breather.maybeYield();
      for (const index of abbaOrder(loaded.length, i)) {
        const model = loaded[index]!;
        seconds[index]! += (await timedRun(model, batches[index]!, settings.batchSize, 'throughput')) / 1000;
      }
    }

    return loaded.map((model, index) => {
      const sorted = latencies[index]!.sort();
      return {
        model: model.model.manifest.name,
        version: model.version,
        sha256: model.model.artifactId,
        role: model.role,
        score: model.score!,
        latencyMs: { p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), p99: percentile(sorted, 0.99), samples: settings.latencySamples },
        batchSize: settings.batchSize,
        throughputRowsPerSecond: (settings.throughputBatches * settings.batchSize) / Math.max(seconds[index]!, 1e-9),
        loadTimeMs: model.loadTimeMs,
        rssIncreaseBytes: model.rssIncreaseBytes,
      };
    });
  } finally {
    for (const model of loaded) await model.session.release();
  }
}

interface Loaded {
  role: Role;
  version: string;
  model: InstalledModel;
  holdout: AlignedHoldout;
  session: OnnxSession;
  /** What every run must give (its manifest's width): a model giving another is failed, never scored. */
  expected: ExpectedOutput;
  loadTimeMs: number;
  rssIncreaseBytes: number;
  score?: ModelBenchmark['score'];
}

/**
 * A benchmark that failed on one of its models, `role` naming which: the active model's failure
 * is the device's (its holdout, its own model), no verdict on the candidate, which then never ran.
 */
export class ModelBenchmarkError extends Error {
  constructor(
    readonly role: Role,
    message: string,
  ) {
    super(message);
  }
}

/** Loads a model and aligns the holdout with it; a ModelBenchmarkError naming the model (the active one's failure fails the candidate's benchmark too). */
async function load({ role, version, model }: { role: Role; version: string; model: InstalledModel }, holdout: Holdout): Promise<Loaded> {
  try {
    const aligned = alignHoldout(holdout, model.manifest);
    const rssBefore = process.memoryUsage.rss();
    const loadStart = performance.now();
    const session = await createOnnxSession(await readVerifiedOnnx(onnxSource(model)));
    return { role, version, model, holdout: aligned, session, expected: expectedOutput(model.manifest, version, role), loadTimeMs: performance.now() - loadStart, rssIncreaseBytes: process.memoryUsage.rss() - rssBefore };
  } catch (error) {
    throw new ModelBenchmarkError(role, `the ${role} model ${version}: ${errorMessage(error)}`);
  }
}

/**
 * A candidate that would take longer than this on the largest request a device serves
 * (MAX_ROWS_PER_REQUEST rows, at its pace on a run), and is slower than SLOW_RUN_FACTOR times the
 * active model's median run of the same phase, fails the benchmark (SlowRunGuard): inference runs inline, so each run of
 * it holds up the device's requests that long (a signed model whose work grows with its rows
 * passes the server's check on 65 rows and then takes seconds a row here). About 2 ms a row: far
 * beyond the dense networks pruning makes, unless the active model is as slow.
 */
export const SLOW_RUN_FLOOR_MS = 2000;
export const SLOW_RUN_FACTOR = 20;
/** And no run shorter than this fails (a single row timed in ms is at the mercy of any pause). */
export const SLOW_RUN_MIN_MS = 1000;
/** Runs over those limits, of a phase's last SLOW_RUN_WINDOW, that are the verdict: one may be a pause of the process. */
export const SLOW_RUN_STRIKES = 2;
export const SLOW_RUN_WINDOW = 3;
/**
 * Unless it took this long with the process busy for most of it (SLOW_RUN_BUSY_SHARE of the run's
 * time in CPU): a second such run would hold requests up as long again. A run that long with the
 * process idle was a stall of the device (a stopped or frozen process, a swap storm), not the
 * model: it is one slow run, timed again like any other.
 */
export const SLOW_RUN_VERDICT_MS = 10_000;
export const SLOW_RUN_BUSY_SHARE = 0.5;

/**
 * Starts timing one inference run: the function it returns gives its wall time and the process's
 * CPU time over it (all threads). Inference runs inline, so a run the device really spent on the
 * model shows as CPU; a stopped or frozen process shows none.
 */
export function startRunClock(): () => { ms: number; cpuMs: number } {
  const start = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const ms = performance.now() - start;
    const used = process.cpuUsage(cpu);
    return { ms, cpuMs: (used.user + used.system) / 1000 };
  };
}

/** A time in ms as a message shows it: sub-millisecond medians keep their digits (not "0.0 ms"). */
export function formatRunMs(ms: number): string {
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 1) return `${ms.toFixed(1)} ms`;
  return `${Number(ms.toPrecision(2))} ms`;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The model's score on the whole holdout, its runs held to the active model's by `guard`; an Error if it gives non-finite outputs or rows of another width than its manifest says (never scored as a class). */
async function score(model: Loaded, guard: SlowRunGuard, signal?: AbortSignal): Promise<ModelBenchmark['score']> {
  const { holdout, session, role, version, expected } = model;
  const { nFeatures, rows } = holdout;
  const predictions: number[][] = [];
  for (let start = 0; start < rows; start += SCORING_CHUNK) {
    const count = Math.min(SCORING_CHUNK, rows - start);
    if (start > 0) await nextTurn();
    // A stop or a rollback between runs (a stop must not wait for a slow model's whole holdout).
    signal?.throwIfAborted();
    const run = startRunClock();
    predictions.push(...(await runModel(session, holdout.features.subarray(start * nFeatures, (start + count) * nFeatures), count, nFeatures, expected)));
    const { ms, cpuMs } = run();
    guard.check(model, 'scoring', count, ms, cpuMs);
  }
  const nonFinite = predictions.filter((output) => output.some((value) => !Number.isFinite(value))).length;
  if (nonFinite > 0) throw new ModelBenchmarkError(role, `the ${role} model ${version} gives non-finite outputs for ${nonFinite} of ${rows} holdout rows`);
  const result = scorePredictions(holdout.task, predictions, holdout.y);
  return 'accuracy' in result ? { accuracy: result.accuracy, correct: Math.round(result.accuracy * rows), total: rows } : { mse: result.mse, r2: result.r2, total: rows };
}

/**
 * Holds each candidate run to the active model's median run of the same phase (scoring, warm-up,
 * latency, throughput): one that would take longer than SLOW_RUN_FLOOR_MS on the largest request
 * a device serves (MAX_ROWS_PER_REQUEST rows, at its pace per row) and is over SLOW_RUN_FACTOR
 * times slower, twice in its last three runs of a phase, fails the benchmark. Inference runs inline, so each such run holds the device's
 * requests up as long; a model slow only at some row counts (one, or other than 64) is caught at
 * the first run of them. Without an active model nothing is served, and nothing is held to it.
 */
export class SlowRunGuard {
  /** The active model's run times, by phase. */
  readonly #active = new Map<string, number[]>();
  /** Whether each of the candidate's last SLOW_RUN_WINDOW runs was slow, by phase. */
  readonly #recent = new Map<string, boolean[]>();

  /** `cpuMs`: the process's CPU time over the run (startRunClock); left out, the run is taken as busy throughout. */
  check(model: Pick<Loaded, 'role' | 'version'>, phase: string, rows: number, ms: number, cpuMs: number = ms): void {
    if (model.role === 'active') {
      const runs = this.#active.get(phase);
      if (runs) runs.push(ms);
      else this.#active.set(phase, [ms]);
      return;
    }
    const runs = this.#active.get(phase);
    const overFloors = ms > SLOW_RUN_MIN_MS && (ms * MAX_ROWS_PER_REQUEST) / rows > SLOW_RUN_FLOOR_MS;
    // The active model's median run of the phase: one paused run of its own does not excuse the candidate.
    const activeMs = runs !== undefined && overFloors ? median(runs) : undefined;
    const slow = activeMs !== undefined && ms > SLOW_RUN_FACTOR * activeMs;
    const recent = [...(this.#recent.get(phase) ?? []), slow].slice(-SLOW_RUN_WINDOW);
    this.#recent.set(phase, recent);
    // A pause of the process (a collection, the machine busy, the process stopped) can make one run
    // slow: a slow model is slow again soon (SLOW_RUN_STRIKES of the last SLOW_RUN_WINDOW runs, so
    // one that is slow every other run is caught too), unless the run took so long, with the
    // process busy on it, that no pause explains it.
    if (activeMs === undefined || !slow) return;
    const strikes = recent.filter(Boolean).length;
    const busyLong = ms >= SLOW_RUN_VERDICT_MS && cpuMs >= SLOW_RUN_BUSY_SHARE * ms;
    if (strikes < SLOW_RUN_STRIKES && !busyLong) return;
    const why =
      strikes >= SLOW_RUN_STRIKES
        ? `${strikes} of its last ${recent.length} ${phase} runs were that slow`
        : `one run over ${SLOW_RUN_VERDICT_MS / 1000} s with the process busy for ${formatRunMs(cpuMs)} of it, so not a stall of the device`;
    const pace = rows > 1 ? `, ${Math.round((ms * MAX_ROWS_PER_REQUEST) / rows)} ms at that pace for a request of ${MAX_ROWS_PER_REQUEST} rows` : '';
    throw new ModelBenchmarkError(
      model.role,
      `the ${model.role} model ${model.version} took ${Math.round(ms)} ms to run ${rows} holdout row${rows === 1 ? '' : 's'} (${phase}), over ${SLOW_RUN_FACTOR} times the active model's ${formatRunMs(activeMs)} (its median) ` +
        `(${why}${pace}): not benchmarked further, as its runs would hold up the device's requests that long`,
    );
  }
}

/** The order in which `n` models run their `i`-th sample: forwards on even samples, backwards on odd ones (ABBA). */
export function abbaOrder(n: number, i: number): number[] {
  const order = Array.from({ length: n }, (_, index) => index);
  return i % 2 === 0 ? order : order.reverse();
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Gives the event loop a turn when YIELD_EVERY_MS have passed since the last one. */
class Breather {
  #last = performance.now();
  readonly #signal: AbortSignal | undefined;

  constructor(signal?: AbortSignal) {
    this.#signal = signal;
  }

  /** Also where an abort lands: it throws the signal's reason. */
  async maybeYield(): Promise<void> {
    if (performance.now() - this.#last < YIELD_EVERY_MS) return;
    await nextTurn();
    this.#signal?.throwIfAborted();
    this.#last = performance.now();
  }
}
