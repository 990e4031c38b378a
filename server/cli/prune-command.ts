import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { assertArtifactDestination } from '../../shared/artifact/write-artifact.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { UserError } from '../../shared/util/errors.ts';
import { assertWritableDirectory } from '../../shared/util/fs-checks.ts';
import { cliLogLevel, createLogger } from '../../shared/util/log.ts';
import { PruneOptionsSchema, type PruneOptions } from '../pruning/options.ts';
import { pruneToArtifacts } from '../pruning/prune-to-artifacts.ts';
import { formatPruneSummary } from '../pruning/summary.ts';
import { addPruneTuningOptions, modelNameFromFile, type PruneTuningFlags } from './prune-flags.ts';
import { createPhaseProgress } from './progress.ts';

interface PruneFlags extends PruneTuningFlags {
  data: string;
  label: string;
  out: string;
  signKey?: string;
  name?: string;
}

/** Zod paths of PruneOptions → the CLI flag that sets them, for one-line error messages. */
const FLAG_OF: Record<string, string> = {
  epsilons: '--epsilon',
  epsilonMode: '--epsilon-mode',
  toleranceAccuracyPoints: '--tolerance',
  toleranceMseFraction: '--tolerance',
  toleranceLossFraction: '--loss-tolerance',
};

export function registerPruneCommand(program: Command): void {
  const command = program
    .command('prune')
    .description('train a general dense network, prune it with ODF2NNA, and write a signed artifact')
    .requiredOption('--data <file>', 'CSV file with a header row')
    .requiredOption('--label <column>', 'the label column')
    .requiredOption('--out <dir>', 'output artifact directory (also gets report.json and general/)');
  addPruneTuningOptions(command)
    .option('--sign-key <file>', 'ed25519 private key (from `fleetprune keys generate`) to sign the artifact')
    .option('--name <name>', 'model name (default: the data file name)')
    .action(async (flags: PruneFlags) => {
      await runPrune(flags);
    });
}

async function runPrune(flags: PruneFlags): Promise<void> {
  if (flags.task !== undefined && flags.task !== 'classification' && flags.task !== 'regression') {
    throw new UserError(`--task: must be classification or regression, not "${flags.task}"`);
  }
  parsePruneOptions(flags, flags.task ?? 'classification'); // fail fast on bad flags, before reading data
  const privateKey = flags.signKey ? await loadPrivateKey(flags.signKey) : undefined;
  const dataset = loadDatasetFile(flags.data, { label: flags.label, task: flags.task });
  const options = parsePruneOptions(flags, dataset.task);
  const name = flags.name ?? modelNameFromFile(flags.data);
  const outDir = resolve(flags.out);
  await assertWritableDirectory(outDir);
  await assertArtifactDestination(outDir);

  const log = createLogger('prune', cliLogLevel());
  const backend = await initTfjs();
  log.info({ backend, rows: dataset.x.length, task: dataset.task, epsilons: options.epsilons }, 'pruning');
  if (!privateKey) process.stderr.write('note: no --sign-key given: the artifact is written unsigned and will not verify\n');

  const progress = createPhaseProgress();
  let result;
  try {
    result = await pruneToArtifacts({
      dataset,
      options,
      backend,
      outDir,
      name,
      privateKey,
      onProgress: (event) => progress.update(event),
    });
  } finally {
    progress.stop();
  }
  process.stdout.write(formatPruneSummary(result.report, outDir));
}

/** Flags → validated options; --tolerance is in accuracy points, or MSE percent for regression. */
export function parsePruneOptions(flags: PruneFlags, task: 'classification' | 'regression'): PruneOptions {
  const regression = task === 'regression';
  const parsed = PruneOptionsSchema.safeParse({
    task,
    epsilons: flags.epsilon,
    epsilonMode: flags.epsilonMode,
    layers: flags.layers,
    units: flags.units,
    epochs: flags.epochs,
    seed: flags.seed,
    toleranceAccuracyPoints: regression ? undefined : flags.tolerance,
    toleranceMseFraction: regression && flags.tolerance !== undefined ? flags.tolerance / 100 : undefined,
    toleranceLossFraction: flags.lossTolerance,
    l1: flags.l1,
    l1Input: flags.l1Input,
    fullSweep: flags.fullSweep,
  });
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    const key = String(first.path[0] ?? '');
    const flag = FLAG_OF[key] ?? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new UserError(`${flag}: ${first.message}`);
  }
  return parsed.data;
}
