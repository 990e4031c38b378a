import { basename, extname, resolve } from 'node:path';
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
import { parseInteger, parseNumber, parseNumberList } from './option-parsers.ts';
import { createPhaseProgress } from './progress.ts';

interface PruneFlags {
  data: string;
  label: string;
  out: string;
  task?: 'classification' | 'regression';
  epsilon?: number[];
  epsilonMode?: 'relative' | 'absolute';
  layers?: number;
  units?: number;
  epochs?: number;
  seed?: number;
  tolerance?: number;
  signKey?: string;
  name?: string;
  fullSweep?: boolean;
}

/** Zod paths of PruneOptions → the CLI flag that sets them, for one-line error messages. */
const FLAG_OF: Record<string, string> = {
  epsilons: '--epsilon',
  epsilonMode: '--epsilon-mode',
  toleranceAccuracyPoints: '--tolerance',
  toleranceMseFraction: '--tolerance',
};

export function registerPruneCommand(program: Command): void {
  program
    .command('prune')
    .description('train a general dense network, prune it with ODF2NNA, and write a signed artifact')
    .requiredOption('--data <file>', 'CSV file with a header row')
    .requiredOption('--label <column>', 'the label column')
    .requiredOption('--out <dir>', 'output artifact directory (also gets report.json and general/)')
    .option('--task <task>', 'classification or regression (inferred from the label when omitted)')
    .option('--epsilon <e[,e...]>', 'one ε, or a list to sweep (default: 0.05,0.1,0.2,0.3,0.5,0.7)', parseNumberList)
    .option('--epsilon-mode <mode>', 'relative (ε × the layer\'s most variable unit) or absolute', 'relative')
    .option('--layers <n>', 'hidden layers of the general model', parseInteger)
    .option('--units <n>', 'units per hidden layer of the general model', parseInteger)
    .option('--epochs <n>', 'maximum training epochs of the general model (early stopping ends sooner)', parseInteger)
    .option('--seed <n>', 'seed for splits, initialisation and shuffling', parseInteger)
    .option('--tolerance <t>', 'allowed validation loss: accuracy points (default 0.5), or MSE percent for regression (default 2)', parseNumber)
    .option('--full-sweep', 'retrain every ε of the sweep, not only up to the smallest model within tolerance')
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
  const name = flags.name ?? basename(flags.data, extname(flags.data)).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
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
