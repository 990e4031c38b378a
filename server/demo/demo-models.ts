import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { Dataset } from '../../shared/data/dataset.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { PruneOptionsSchema, type PruneOptionsInput } from '../pruning/options.ts';
import type { ProgressEvent } from '../pruning/odf2nna.ts';
import { GENERAL_SUBDIR } from '../pruning/output-layout.ts';
import { pruneToArtifacts } from '../pruning/prune-to-artifacts.ts';
import type { PruneReport } from '../pruning/report.ts';

export interface DemoArtifact {
  dir: string;
  manifest: Manifest;
}

export interface DemoModels {
  general: DemoArtifact;
  good: DemoArtifact & { report: PruneReport };
  overPruned: DemoArtifact & { report: PruneReport };
}

/** ε of the deliberately over-pruned candidate. */
export const OVER_PRUNED_EPSILON = 0.9;

/**
 * The demo's three models, all from one general network: ODF2NNA's own choice of ε (the
 * sweep), and an over-pruned candidate at ε 0.9 that keeps too few units and is shipped without
 * the retraining (a careless prune, which the pilot must catch). Both prune the same general model,
 * trained once, which both name as parent.
 */
export async function buildDemoModels(input: {
  dataset: Dataset;
  name: string;
  workDir: string;
  backend: string;
  privateKey: KeyObject;
  seed: number;
  /** Smaller networks for tests; the demo itself uses ODF2NNA's defaults. */
  overrides?: PruneOptionsInput;
  onProgress?: (label: string, event: ProgressEvent) => void;
}): Promise<DemoModels> {
  const { dataset, name, workDir, backend, privateKey, seed } = input;
  const goodDir = join(workDir, `${name}-odf2nna`);
  const good = await pruneToArtifacts({
    dataset,
    // Without the scratch and L1 baselines: the demo shows neither, and they are trained after
    // the candidate is chosen and exported (their own seeds), so the candidate is the same
    // without them, in a good part less time (`fleetprune prune` reports them).
    options: PruneOptionsSchema.parse({ ...input.overrides, task: dataset.task, seed, baselines: false }),
    backend,
    outDir: goodDir,
    name,
    privateKey,
    keepGeneral: true,
    onProgress: (event) => input.onProgress?.('candidate', event),
  });
  const overDir = join(workDir, `${name}-overpruned`);
  let over;
  try {
    over = await pruneToArtifacts({
      dataset,
      options: PruneOptionsSchema.parse({ ...input.overrides, task: dataset.task, seed, epsilons: [OVER_PRUNED_EPSILON], retrainEpochs: 0, baselines: false }),
      backend,
      outDir: overDir,
      name,
      privateKey,
      parent: good.general,
      // Pruned from the general model just trained, not from a second training of it.
      trained: good.trained,
      onProgress: (event) => input.onProgress?.('over-pruned', event),
    });
  } finally {
    good.trained?.model.dispose();
  }
  return {
    general: { dir: join(goodDir, GENERAL_SUBDIR), manifest: good.general },
    good: { dir: goodDir, manifest: good.pruned, report: good.report },
    overPruned: { dir: overDir, manifest: over.pruned, report: over.report },
  };
}
