import { rmdirSync } from 'node:fs';
import { mkdir, readdir, realpath, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { splitDataset } from '../../shared/data/split.ts';
import { assertLearnable } from '../pruning/standardization.ts';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { assertArtifactDestination, resolveArtifactDestination } from '../../shared/artifact/artifact-destination.ts';
import { UserError, errorMessage, underFlag } from '../../shared/util/errors.ts';
import { assertWritableDirectory } from '../../shared/util/fs-checks.ts';
import { cliLogLevel, createLogger } from '../../shared/util/log.ts';
import { formatPruneSummary } from '../pruning/summary.ts';
import { addPruneTuningOptions, checkedModelName, modelNameFromFile, parsePruneOptions, taskFlag, type PruneTuningFlags } from './prune-flags.ts';
import { createPhaseProgress, type PhaseProgress } from './progress.ts';
import { handlePruneInterrupts, type PruneInterrupt } from './prune-interrupt.ts';
import { lockPruneOutput } from './prune-output-lock.ts';
import { assertOutputNameFits, isStagingSibling } from '../pruning/output-layout.ts';
import type { PruneToArtifactsInput } from '../pruning/prune-to-artifacts.ts';
import { isInside } from '../../shared/util/path-inside.ts';

interface PruneFlags extends PruneTuningFlags {
  data: string;
  label: string;
  out: string;
  signKey?: string;
  name?: string;
}

export function registerPruneCommand(program: Command): void {
  const command = program
    .command('prune')
    .description('train a general dense network, prune it with ODF2NNA, and write a signed artifact')
    .requiredOption('--data <file>', 'CSV file with a header row')
    .requiredOption('--label <column>', 'the label column')
    .requiredOption('--out <dir>', 'output artifact directory (also gets report.json and general/)');
  addPruneTuningOptions(command)
    .option('--sign-key <file>', 'ed25519 private key (from `fleetprune keys generate`) to sign the artifact')
    .option('--name <name>', 'model name (default: the data file\'s name without its extension, each character other than A-Z a-z 0-9 . _ - made _, at most 64)')
    .action(async (flags: PruneFlags) => {
      await runPrune(flags);
    });
}

async function runPrune(flags: PruneFlags): Promise<void> {
  // An empty path (`--sign-key "$KEY"` with KEY unset) is a mistake, not a missing flag: it wrote
  // the artifact unsigned, and --out '' wrote it into the working directory.
  for (const [flag, path] of [['--data', flags.data], ['--out', flags.out], ['--sign-key', flags.signKey]] as const) {
    if (path === '') throw new UserError(`${flag}: the path is empty`);
  }
  const task = taskFlag(flags);
  // Fail fast on bad flags, before reading data; --tolerance only once the task is known (its unit depends on it).
  parsePruneOptions(task ? flags : { ...flags, tolerance: undefined }, task ?? 'classification');
  const privateKey = flags.signKey ? await underFlag('--sign-key', () => loadPrivateKey(flags.signKey!)) : undefined;
  if (flags.signKey) await warnIfOthersCanRead(flags.signKey);
  const dataset = loadDatasetFile(flags.data, { label: flags.label, task });
  const options = parsePruneOptions(flags, dataset.task);
  const name = checkedModelName(flags.name ?? modelNameFromFile(flags.data));
  // Enough rows for every split, and something to learn in the training one, checked before anything is written or trained.
  const { train } = splitDataset(dataset, options.seed, { validation: options.validationFraction, test: options.testFraction });
  assertLearnable(train.x, train.y, dataset.task, dataset.featureNames, dataset.labelName);
  const outDir = await resolveArtifactDestination(resolve(flags.out));
  assertOutputNameFits(outDir, '--out');
  await assertWritableDirectory(outDir, 'output directory', '--out');
  await assertArtifactDestination(outDir);
  await assertNotWorkingDirectory(outDir);
  // The lock sits beside --out, so its parent must exist now (the artifact's write would create it anyway).
  const createdParent = await mkdir(dirname(outDir), { recursive: true });
  const lock = lockPruneOutput(outDir);
  await removeStagingLeftovers(outDir);
  let written = false;
  const progress = createPhaseProgress();
  // From here a signal before the export ends the process at once (as without a handler), after
  // showing the cursor again and removing the lock and the directories this run created for --out
  // (the finally below never runs then); during the export it stops the run cleanly.
  const interrupt = handlePruneInterrupts(outDir, () => {
    progress.stop();
    lock.release();
    if (createdParent) removeEmptyDirectories(dirname(outDir), createdParent);
  });
  // An exit on the way (the output's reader gone: run-cli exits with 141) skips the finally too.
  const removeCreatedOnExit = () => {
    if (!written && createdParent) removeEmptyDirectories(dirname(outDir), createdParent);
  };
  process.once('exit', removeCreatedOnExit);
  try {
    const result = await pruneInto(outDir, { dataset, options, name, privateKey }, progress, interrupt);
    written = true;
    // The bars first: while they are drawn the terminal's line wrapping is off, so a summary
    // written under them lost every line's end past the terminal's width, and their final redraw
    // landed after it.
    progress.stop();
    process.stdout.write(formatPruneSummary(result.report, outDir));
  } finally {
    interrupt.dispose();
    process.off('exit', removeCreatedOnExit);
    progress.stop();
    lock.release();
    // A run that wrote nothing leaves no directories behind either.
    removeCreatedOnExit();
  }
}

async function pruneInto(outDir: string, input: Pick<PruneToArtifactsInput, 'dataset' | 'options' | 'name' | 'privateKey'>, progress: PhaseProgress, interrupt: PruneInterrupt) {
  // TensorFlow.js and the pruning code only once the input is known to be good (~0.6 s to load).
  const [{ initTfjs }, { pruneToArtifacts }] = await Promise.all([import('../../shared/model/tfjs-backend.ts'), import('../pruning/prune-to-artifacts.ts')]);
  const log = createLogger('prune', cliLogLevel());
  const backend = await initTfjs();
  log.info({ backend, rows: input.dataset.x.length, task: input.dataset.task, epsilons: input.options.epsilons }, 'pruning');
  // Said at the start, whatever the log level: a run on the wrong backend can take minutes.
  process.stderr.write(`backend: ${backend}\n`);
  if (!input.privateKey) process.stderr.write('note: no --sign-key given: the artifact is written unsigned and will not verify\n');
  return pruneToArtifacts({
    ...input,
    backend,
    outDir,
    signal: interrupt.signal,
    onProgress: (event) => {
      if (event.phase === 'export') interrupt.exportStarted();
      progress.update(event);
    },
  });
}

/**
 * The artifact replaces --out by a rename: were it the working directory (`--out .` in an empty
 * directory, or in a previous output), the shell that ran the command would be left in a deleted
 * directory, where `ls` shows nothing of what was written.
 */
async function assertNotWorkingDirectory(outDir: string): Promise<void> {
  const real = await realpath(outDir).catch(() => undefined);
  if (real === undefined) return;
  if (real === process.cwd()) {
    throw new UserError(`--out: ${outDir} is the working directory, which the artifact would replace (leaving this shell in a deleted directory); give --out from outside it (e.g. ../${basename(real)})`);
  }
  if (isInside(real, process.cwd())) {
    throw new UserError(`--out: ${outDir} holds the working directory, which the artifact would replace (leaving this shell in a deleted directory); give --out from outside it`);
  }
}

/** Removes `dir` and its parents up to `top` (inclusive) while they are empty. Synchronous: also run from a signal handler. */
function removeEmptyDirectories(dir: string, top: string): void {
  for (let current = dir; current.startsWith(top); current = dirname(current)) {
    try {
      rmdirSync(current);
    } catch {
      return;
    }
    if (current === top) return;
  }
}

/**
 * Removes what runs killed while staging (SIGKILL, SIGHUP when the terminal closed, a power cut)
 * left beside --out: holding its lock, no live run stages there. They were never removed, and each
 * held a whole artifact.
 */
async function removeStagingLeftovers(outDir: string): Promise<void> {
  const parent = dirname(outDir);
  const leftovers = (await readdir(parent).catch(() => [] as string[])).filter((name) => isStagingSibling(outDir, name));
  for (const name of leftovers) {
    await rm(join(parent, name), { recursive: true, force: true }).then(
      () => process.stderr.write(`note: removed ${join(parent, name)}, left by an earlier run of --out ${outDir} that did not finish\n`),
      (error: unknown) => process.stderr.write(`warning: cannot remove ${join(parent, name)}, left by an earlier run that did not finish: ${errorMessage(error)}\n`),
    );
  }
}

/** Whoever can read the signing key can sign models every device trusts: said, as ssh says it of its keys (keys generate writes it 0600). */
async function warnIfOthersCanRead(keyFile: string): Promise<void> {
  const mode = (await stat(keyFile).catch(() => undefined))?.mode;
  if (mode === undefined || (mode & 0o077) === 0) return;
  process.stderr.write(`warning: --sign-key ${keyFile} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): anyone who reads it can sign models your devices trust; chmod 600 it\n`);
}
