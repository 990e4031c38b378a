import { Worker } from 'node:worker_threads';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { errorMessage } from '../../shared/util/errors.ts';
// The checks an agent makes before it installs a model (precedent: the demo runs the agent's code too).
import { modelInterfaceProblem, modelProbeProblem, outputWidth } from '../../agent/model-interface.ts';
import { createOnnxSession, type OnnxSession } from '../../agent/onnx-session.ts';
import { runModel } from '../../agent/onnx-runner.ts';
import type { WorkerReply, WorkerRequest } from '../app/worker-pool.ts';

// A child process of the server's (model-check-runner.ts): a model that never finishes is ended with it (SIGKILL).

/** What a model check is given: the stored model.onnx and the manifest that lists it. */
export interface ModelCheckInput {
  bytes: Uint8Array;
  manifest: Manifest;
}

/**
 * Rows of the batch run after the one-row probe: a benchmark's batch (agents run 64 rows at once).
 * A model whose work grows with the rows it is given (a loop over them) shows it here, within the
 * check's time limit, rather than on the devices, whose runs have none.
 */
const BATCH_ROWS = 64;
/** How far a classifier's row of outputs may sum from 1 (float32 softmax over many classes). */
const PROBABILITY_SUM_TOLERANCE = 1e-3;

/**
 * Why devices would refuse the model, or null: it does not load in onnxruntime, does not take and
 * give what the manifest says (modelInterfaceProblem), gives another shape on one row
 * (modelProbeProblem) or on a batch, or, a classifier, gives outputs that are no probabilities.
 * Runs in a child process (model-check-runner.ts): a model is run here before any device runs it,
 * and one that never finishes must not hold the server, nor a thread of it that nothing could end.
 */
async function modelProblem({ bytes, manifest }: ModelCheckInput): Promise<string | null> {
  let session: OnnxSession;
  try {
    session = await createOnnxSession(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    return `model.onnx does not load in onnxruntime (${errorMessage(error)})`;
  }
  try {
    return modelInterfaceProblem(session, manifest) ?? (await modelProbeProblem(session, manifest)) ?? (await batchProblem(session, manifest));
  } finally {
    await session.release();
  }
}

/** A batch of BATCH_ROWS rows (zeros, then ones): the shape, and a classifier's probabilities. */
async function batchProblem(session: OnnxSession, manifest: Manifest): Promise<string | null> {
  const nFeatures = manifest.features.length;
  for (const value of [0, 1]) {
    let rows: number[][];
    try {
      rows = await runModel(session, new Float32Array(BATCH_ROWS * nFeatures).fill(value), BATCH_ROWS, nFeatures, { width: outputWidth(manifest) });
    } catch (error) {
      return `model.onnx fails when run on ${BATCH_ROWS} rows: ${errorMessage(error)}`;
    }
    if (manifest.task !== 'classification') continue;
    // Non-finite outputs are the data's business (the agent refuses them per row, with its reason).
    const bad = rows.find((row) => row.every(Number.isFinite) && (row.some((p) => p < -PROBABILITY_SUM_TOLERANCE || p > 1 + PROBABILITY_SUM_TOLERANCE) || Math.abs(row.reduce((sum, p) => sum + p, 0) - 1) > PROBABILITY_SUM_TOLERANCE));
    if (bad) {
      return `model.onnx gives [${bad.map((p) => Number(p.toPrecision(6))).join(', ')}] for a row of ${value === 0 ? 'zeros' : 'ones'}, which are no probabilities (each in [0, 1], summing to 1): the manifest's classifier is served as one, and devices would report these as its class probabilities`;
    }
  }
  return null;
}

async function answer({ id, input }: WorkerRequest<ModelCheckInput>): Promise<WorkerReply<string | null>> {
  try {
    return { id, type: 'valid', result: await modelProblem(input) };
  } catch (error) {
    return { id, type: 'error', message: errorMessage(error), stack: (error as Error)?.stack };
  }
}

/**
 * A model that loops holds this process's only JavaScript thread, where no 'disconnect' or signal
 * handler can run: a watchdog thread ends the process (SIGKILL) once the server that started it is
 * gone (killed without its exit handler running: kill -9, a second SIGTERM), or a check has run
 * well past the server's own limit.
 */
const watchdog = new Worker(
  `const { parentPort, workerData } = require('node:worker_threads');
  let deadline = Infinity;
  parentPort.on('message', (at) => { deadline = at; });
  setInterval(() => { if (process.ppid !== workerData.ppid || Date.now() > deadline) process.kill(process.pid, 'SIGKILL'); }, 500);`,
  { eval: true, workerData: { ppid: process.ppid } },
);
watchdog.unref();
/** Beyond the server's own limit (MODEL_CHECK_TIMEOUT_MS, 10 s), by which it has killed this process already. */
const CHECK_DEADLINE_MS = 30_000;

process.on('message', (request: WorkerRequest<ModelCheckInput>) => {
  watchdog.postMessage(Date.now() + CHECK_DEADLINE_MS);
  void answer(request).then((reply) => {
    watchdog.postMessage(Number.POSITIVE_INFINITY);
    process.send?.(reply);
  });
});
// The server gone (its channel closed): nothing more to check.
process.on('disconnect', () => process.exit(0));
