import { basename, extname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { parseInteger, parseNumber, parseNumberList } from '../../shared/cli/option-parsers.ts';
import { canonicalText } from '../../shared/util/canonical-text.ts';
import { UserError, zodIssueMessage } from '../../shared/util/errors.ts';
import { PruneOptionsSchema, type PruneOptions } from '../pruning/options.ts';
import { ModelNameSchema } from '../registry/names.ts';

/** The ODF2NNA settings `fleetprune prune` and `fleetprune jobs prune` share. */
export interface PruneTuningFlags {
  task?: string;
  epsilon?: number[];
  epsilonMode?: string;
  layers?: number;
  units?: number;
  epochs?: number;
  seed?: number;
  tolerance?: number;
  lossTolerance?: number;
  l1?: number;
  l1Input?: number;
  fullSweep?: boolean;
  trainingThreads?: 'auto' | number;
}

export function addPruneTuningOptions(command: Command): Command {
  return command
    .option('--task <task>', 'classification or regression (inferred from the label when omitted)')
    // Given again, the lists add up (`--epsilon 0.1 --epsilon 0.2` sweeps both): commander kept only the last, dropping the others without a word.
    .option('--epsilon <e[,e...]>', 'one ε, or a list to sweep (default: 0.05,0.1,0.2,0.3,0.5,0.7)', (value: string, previous?: number[]) => [...(previous ?? []), ...parseNumberList(value)])
    .option('--epsilon-mode <mode>', "relative (ε × the layer's most variable unit, the default) or absolute")
    .option('--layers <n>', 'hidden layers of the general model, 1-16 (default 3)', parseInteger)
    .option('--units <n>', 'units per hidden layer of the general model, 2-4096 (default 128)', parseInteger)
    .option('--epochs <n>', 'maximum training epochs of the general model; early stopping ends sooner (default 200)', parseInteger)
    .option('--seed <n>', 'seed for splits, initialisation and shuffling (default 42)', parseInteger)
    .option('--tolerance <t>', 'allowed validation loss: accuracy points (default 0.5), or MSE percent for regression (default 2)', parseNumber)
    .option('--loss-tolerance <fraction>', 'classification: validation cross-entropy may also grow by this fraction, or 0.05 nats (default 0.5)', parseNumber)
    .option('--l1-input <lambda>', "L1 penalty on the first hidden layer's kernel while training the general model; 0 turns it off (default 1e-3)", parseNumber)
    .option('--l1 <lambda>', 'L1 penalty on the other hidden kernels; 0 turns it off (default 3e-4)', parseNumber)
    .option('--full-sweep', 'retrain every ε of the sweep, not only up to the smallest model within tolerance')
    .option('--training-threads <n>', 'auto (the default: 2 for MNIST-sized data on a machine with 2 cores or more), 1, or 2: trainings run two at a time on a second thread', parseTrainingThreads);
}

function parseTrainingThreads(value: string): 'auto' | number {
  const given = value.trim();
  if (given === 'auto') return 'auto';
  if (given === '1' || given === '2') return Number(given);
  throw new InvalidArgumentError('must be auto, 1 or 2');
}

/** --task, checked: classification, regression, or not given (inferred from the label). */
export function taskFlag(flags: PruneTuningFlags): 'classification' | 'regression' | undefined {
  if (flags.task !== undefined && flags.task !== 'classification' && flags.task !== 'regression') {
    throw new UserError(`--task: must be classification or regression, not "${flags.task}"`);
  }
  return flags.task;
}

/**
 * --name (or the name derived from the data file), checked against the registry's rule, which is
 * stricter than the manifest's (no leading dot): a model the registry would refuse at push time is
 * refused before the pipeline spends minutes on it.
 */
export function checkedModelName(name: string): string {
  const valid = ModelNameSchema.safeParse(name);
  if (!valid.success) throw new UserError(`--name: ${valid.error.issues[0]!.message}, not ${JSON.stringify(name)}`);
  return name;
}

/** A model name from a data file's name: `data/wine.csv` → `wine`. */
export function modelNameFromFile(path: string): string {
  const file = basename(path, extname(path));
  // Nothing of it kept (ü.csv, 数据.csv, ..csv): every such file was the model "_" or "__", each one's versions mixed with the others'.
  if (!/[A-Za-z0-9]/.test(file)) {
    throw new UserError(`--name: the data file's name ${JSON.stringify(basename(path))} gives no model name (1-64 characters of A-Z a-z 0-9 . _ -); give one with --name`);
  }
  // Character by character as a reader counts them (graphemes: "🚀" or "é" written decomposed is one `_`,
  // so one file name gives one model name whichever machine's file system wrote it).
  const graphemes = [...new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(canonicalText(file))];
  return graphemes.map(({ segment }) => (/^[A-Za-z0-9._-]$/.test(segment) ? segment : '_')).join('').replace(/^\./, '_').slice(0, 64);
}

/** Zod paths of PruneOptions → the CLI flag that sets them, for one-line error messages. */
const FLAG_OF: Record<string, string> = {
  epsilons: '--epsilon',
  epsilonMode: '--epsilon-mode',
  toleranceAccuracyPoints: '--tolerance',
  toleranceMseFraction: '--tolerance',
  toleranceLossFraction: '--loss-tolerance',
};

/**
 * The tuning flags as PruneOptions fields (undefined where not given); --tolerance is in accuracy
 * points, or MSE percent for regression.
 */
export function pruneOptionsFromFlags(flags: PruneTuningFlags, task: 'classification' | 'regression'): Record<string, unknown> {
  const regression = task === 'regression';
  return {
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
    trainingThreads: flags.trainingThreads,
  };
}

/** --loss-tolerance given for regression data: refused here, and said so for the server's refusal of a job (jobs prune --server-path). */
export const LOSS_TOLERANCE_FOR_REGRESSION =
  '--loss-tolerance: applies to classification only (the validation cross-entropy), and this data set is a regression one: its tolerance is --tolerance, in percent of the MSE';

/** Flags → validated options; an error names the flag. */
export function parsePruneOptions(flags: PruneTuningFlags, task: 'classification' | 'regression'): PruneOptions {
  if (task === 'regression' && flags.lossTolerance !== undefined) {
    throw new UserError(LOSS_TOLERANCE_FOR_REGRESSION);
  }
  const parsed = PruneOptionsSchema.safeParse({ task, ...pruneOptionsFromFlags(flags, task) });
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    const key = String(first.path[0] ?? '');
    const flag = FLAG_OF[key] ?? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    // The schema holds a fraction; the flag takes percent.
    if (key === 'toleranceMseFraction') throw new UserError(`${flag}: for regression, a percentage of the MSE from 0 to 1000, not ${flags.tolerance}`);
    if (key === 'toleranceAccuracyPoints') throw new UserError(`${flag}: for classification, accuracy points from 0 to 100, not ${flags.tolerance}`);
    throw new UserError(`${flag}: ${zodIssueMessage(first)}`);
  }
  return parsed.data;
}
