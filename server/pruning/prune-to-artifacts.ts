import { join } from 'node:path';
import { rename, rm, writeFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import type { Dataset } from '../../shared/data/dataset.ts';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { writeArtifact, type ManifestInput } from '../../shared/artifact/write-artifact.ts';
import type { TrainingRecord } from '../../shared/artifact/training-record.ts';

type CommonFields = Omit<ManifestInput, 'lineage' | 'metrics'>;
import type { PruneOptions } from './options.ts';
import { runOdf2nna, type ProgressEvent, type TrainedGeneral } from './odf2nna.ts';
import type { PruneReport } from './report.ts';
import type { Score } from '../../shared/model/scoring.ts';
import { GENERAL_SUBDIR, REPORT_FILE, generalStagingPath } from './output-layout.ts';
import { explainTrainingFailure } from './training-memory.ts';

export interface PruneToArtifactsInput {
  dataset: Dataset;
  options: PruneOptions;
  backend: string;
  outDir: string;
  name: string;
  privateKey?: KeyObject;
  onProgress?: (event: ProgressEvent) => void;
  /**
   * Checked before each artifact is written, and before the pruned one moves into place: once
   * aborted, the run throws the signal's reason and removes what it staged, leaving `outDir` as it
   * was. The move, once begun, is finished (it replaces `outDir` in one move, general/ and
   * report.json with it).
   */
  signal?: AbortSignal;
  /**
   * The general model's artifact when it already exists (the same data, options and seed train
   * the same general model): no general/ is written and the pruned model names it as its parent.
   */
  parent?: Manifest;
  /** Prune this general model (trained before, see TrainedGeneral) instead of training one; the caller keeps it. */
  trained?: TrainedGeneral;
  /** Hand the trained general model back (`trained` in the result) instead of disposing it; the caller disposes it. */
  keepGeneral?: boolean;
}

export interface PruneToArtifactsResult {
  report: PruneReport;
  pruned: Manifest;
  general: Manifest;
  /** With `keepGeneral`: the general model, to prune again without training it (see TrainedGeneral). */
  trained?: TrainedGeneral;
}

function generalManifestInput(common: CommonFields, options: PruneOptions, dataset: Dataset, report: PruneReport): ManifestInput {
  return {
    ...common,
    lineage: lineage(null, null, options, dataset, 'general'),
    metrics: { test: metricsOf(report.original.test), validation: metricsOf(report.original.validation) },
  };
}

/**
 * Runs ODF2NNA and writes its output: the pruned model as a signed artifact in `outDir`, the
 * general model it came from in `outDir/general` (the pruned model's lineage parent), and
 * `outDir/report.json`.
 */
export async function pruneToArtifacts(input: PruneToArtifactsInput): Promise<PruneToArtifactsResult> {
  const { dataset, options, outDir, name, privateKey } = input;
  const onProgress = input.onProgress ?? (() => {});
  const result = await runOdf2nna(dataset, options, input.backend, onProgress, input.trained).catch((error: unknown) => {
    throw explainTrainingFailure(error, input.backend);
  });
  const { report } = result;
  const training: TrainingRecord = { tool: report.tool, backend: report.backend, options: report.options };
  // The general model is the caller's when it came in (`trained`) or is handed back (`keepGeneral`, on success).
  let handedBack = false;
  try {
    const exportStarted = performance.now();
    onProgress({ phase: 'export', done: 0, total: 2 });
    const common: CommonFields = {
      formatVersion: 1 as const,
      name,
      createdAt: new Date().toISOString(),
      task: dataset.task,
      features: dataset.featureNames,
      labels: dataset.classes,
      labelName: dataset.labelName,
    };
    input.signal?.throwIfAborted();
    const generalStaging = input.parent ? undefined : generalStagingPath(outDir);
    const general =
      input.parent ??
      (await writeArtifact(generalStaging!, {
        network: result.general.network,
        tfjsModel: result.general.model,
        training,
        privateKey,
        manifest: generalManifestInput(common, options, dataset, report),
      }));
    onProgress({ phase: 'export', done: 1, total: 2 });
    try {
      input.signal?.throwIfAborted();
      const pruned = await writeArtifact(outDir, {
        network: result.pruned.network,
        tfjsModel: result.pruned.model,
        training,
        privateKey,
        manifest: {
          ...common,
          lineage: lineage(artifactId(general), report.epsilon, options, dataset, 'odf2nna'),
          metrics: { test: metricsOf(report.pruned.test), validation: metricsOf(report.pruned.validation) },
        },
        // general/ and report.json move in with the pruned artifact: a failure writing them (a
        // full disk) leaves a previous output in outDir whole, rather than replaced by a part.
        beforeMove: async (staging) => {
          // Interrupted while it was staged: stopped before the move, its staging removed, outDir as it was.
          input.signal?.throwIfAborted();
          if (generalStaging) await rename(generalStaging, join(staging, GENERAL_SUBDIR));
          // The export counts in the run's time too (everything but reading the data and moving the output into place).
          const exportSeconds = (performance.now() - exportStarted) / 1000;
          report.phase_timing_s.export = exportSeconds;
          report.timing_s += exportSeconds;
          await writeFile(join(staging, REPORT_FILE), `${JSON.stringify(report, null, 2)}\n`);
        },
      });
      onProgress({ phase: 'export', done: 2, total: 2 });
      handedBack = input.keepGeneral === true;
      return { report, pruned, general, ...(handedBack ? { trained: result.general } : {}) };
    } finally {
      if (generalStaging) await rm(generalStaging, { recursive: true, force: true });
    }
  } finally {
    if (input.trained === undefined && !handedBack) result.general.model.dispose();
    result.pruned.model.dispose();
  }
}

function lineage(parent: string | null, epsilon: number | null, options: PruneOptions, dataset: Dataset, method: string) {
  return {
    parentSha256: parent,
    epsilon,
    epsilonMode: epsilon === null ? null : options.epsilonMode,
    dataFingerprint: dataset.fingerprint,
    method,
    seed: options.seed,
  };
}

function metricsOf(score: Score): { accuracy?: number; mse?: number; r2?: number } {
  return { ...score };
}
