import { createPrivateKey } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { parseDataset } from '../../shared/data/dataset.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { isStorageFailureCode } from '../app/storage-codes.ts';
import { pruneToArtifacts } from '../pruning/prune-to-artifacts.ts';
import { summaryWarnings, sweepSummary, type PruneWorkerInput, type PruneWorkerMessage } from './prune-worker-protocol.ts';

/** Runs in a worker thread: one ODF2NNA run, its artifacts written to input.outDir. */
async function run(input: PruneWorkerInput): Promise<PruneWorkerMessage> {
  const started = performance.now();
  // A task the request left out is inferred again here, as the check did, so that the data's
  // warnings about an inferred task (a regression label of a handful of values) reach the job.
  const dataset = parseDataset(input.csvText, { label: input.label, ...(input.taskGiven ? { task: input.task } : {}) }, input.source);
  const backend = await initTfjs();
  const result = await pruneToArtifacts({
    dataset,
    options: { ...input.options, task: dataset.task },
    backend,
    outDir: input.outDir,
    name: input.name,
    privateKey: createPrivateKey(input.privateKeyPem),
    onProgress: (event) => post({ type: 'progress', event }),
  });
  const report = result.report as unknown as Record<string, any>;
  return {
    type: 'done',
    general: result.general,
    pruned: result.pruned,
    summary: {
      epsilon: result.pruned.lineage.epsilon,
      paramCut: typeof report.pruned?.param_cut === 'number' ? report.pruned.param_cut : null,
      originalLayers: result.general.architecture.layers,
      prunedLayers: result.pruned.architecture.layers,
      backend,
      seconds: (performance.now() - started) / 1000,
      sweep: sweepSummary(result.report.sweep),
      warnings: summaryWarnings(result.report),
    },
  };
}

function post(message: PruneWorkerMessage): void {
  parentPort?.postMessage(message);
}

try {
  post(await run(workerData as PruneWorkerInput));
} catch (error) {
  const userError = error instanceof UserError;
  // A disk full, read-only or not writable under the job's directory (the worker reads no file: its
  // data comes as text; it writes the artifacts there), said as such by the server.
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? (error as { cause?: NodeJS.ErrnoException } | undefined)?.cause?.code;
  const storage = typeof code === 'string' && isStorageFailureCode(code) ? { code } : {};
  post({ type: 'error', message: errorMessage(error), userError, stack: userError ? undefined : (error as Error)?.stack, ...storage });
}
