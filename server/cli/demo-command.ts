import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { SHIPPED_DATASETS, shippedDatasetPath, type ShippedDatasetName } from '../../shared/datasets/index.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { generateSigningKeys, loadPrivateKey, loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { verifyArtifact } from '../../shared/artifact/verify-artifact.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { UserError } from '../../shared/util/errors.ts';
import { PruneOptionsSchema } from '../pruning/options.ts';
import { pruneToArtifacts } from '../pruning/prune-to-artifacts.ts';
import { formatPruneSummary } from '../pruning/summary.ts';
import { createPhaseProgress } from './progress.ts';

interface DemoFlags {
  dataset: string;
  dataDir?: string;
}

/**
 * The main job on embedded defaults (`npm start`): a shipped data set is pruned with ODF2NNA
 * into a signed artifact, which is then verified as a device would verify it.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the pipeline end to end on a shipped data set, in a temporary data dir')
    .option('--dataset <name>', `one of ${Object.keys(SHIPPED_DATASETS).join(', ')}`, 'breast_cancer')
    .option('--data-dir <dir>', 'where keys and artifacts go (default: a new temporary directory)')
    .action(async (flags: DemoFlags) => {
      if (!(flags.dataset in SHIPPED_DATASETS)) {
        throw new UserError(`--dataset: unknown data set "${flags.dataset}" (choose ${Object.keys(SHIPPED_DATASETS).join(', ')})`);
      }
      const name = flags.dataset as ShippedDatasetName;
      const dataDir = flags.dataDir ? resolve(flags.dataDir) : await mkdtemp(join(tmpdir(), 'fleetprune-demo-'));
      const keyFiles = await generateSigningKeys(join(dataDir, 'keys'), { force: true });
      const dataset = loadDatasetFile(shippedDatasetPath(name), { label: SHIPPED_DATASETS[name].label });
      const backend = await initTfjs();
      const outDir = join(dataDir, 'artifacts', `${name}-pruned`);
      process.stdout.write(`fleetprune demo: pruning ${name} (${dataset.x.length} rows) with ODF2NNA, tfjs backend ${backend}\n`);
      const progress = createPhaseProgress();
      let result;
      try {
        result = await pruneToArtifacts({
          dataset,
          options: PruneOptionsSchema.parse({ task: dataset.task }),
          backend,
          outDir,
          name,
          privateKey: await loadPrivateKey(keyFiles.privateKeyPath),
          onProgress: (event) => progress.update(event),
        });
      } finally {
        progress.stop();
      }
      process.stdout.write(formatPruneSummary(result.report, outDir));
      const verification = await verifyArtifact(outDir, await loadPublicKey(keyFiles.publicKeyPath));
      if (!verification.ok) throw new Error(`the demo artifact does not verify: ${verification.failures.join('; ')}`);
      process.stdout.write(`verified: signature and file hashes check out against ${keyFiles.publicKeyPath}\n`);
    });
}
