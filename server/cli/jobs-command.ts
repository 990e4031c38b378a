import { constants } from 'node:buffer';
import { readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { DATA_CHECK_TIMEOUT_MS } from '../jobs/job-data-check-pool.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { onStopSignals } from '../../shared/cli/stop-signals.ts';
import { decodeDataText, looksLikeUtf16 } from '../../shared/data/data-text.ts';
import { parseDataset } from '../../shared/data/dataset.ts';
import { pageFooter, parseLimit, parseOffset } from './bounded-options.ts';
import { formatTable } from './format-table.ts';
import { printable } from '../../shared/util/printable.ts';
import { watchEndedEarly, withConnection, withConnectionOptions, type ConnectionFlags, type ServerConnection } from './grpc-client.ts';
import { formatJob, jobOutcome } from './job-display.ts';
import { jobJson, type GrpcJobRecord } from './json-views.ts';
import { addPruneTuningOptions, checkedModelName, LOSS_TOLERANCE_FOR_REGRESSION, modelNameFromFile, parsePruneOptions, pruneOptionsFromFlags, taskFlag, type PruneTuningFlags } from './prune-flags.ts';

/**
 * How long `jobs prune` waits for the server to take the job: its data check may take up to
 * DATA_CHECK_TIMEOUT_MS (a large data set, a busy server), after which the server answers itself.
 */
const START_PRUNE_DEADLINE_MS = DATA_CHECK_TIMEOUT_MS + 30_000;

/** `jobs watch` (and `jobs prune` without --detach) on a job that was cancelled: neither success (0) nor failure (1). */
export const JOB_CANCELLED_EXIT_CODE = 4;

interface GrpcJob {
  id: string;
  state: string;
  error: string;
  result_json: string;
}

interface JobPruneFlags extends ConnectionFlags, PruneTuningFlags {
  data?: string;
  serverPath?: string;
  label: string;
  name?: string;
  detach?: boolean;
}

export function registerJobsCommand(program: Command): void {
  const jobs = program.command('jobs').description('pruning jobs run by the server (over gRPC)');
  const prune = withConnectionOptions(jobs.command('prune').description('train and prune on the server; registers the general and the pruned model'))
    .option('--data <file>', 'local CSV file, uploaded with the request')
    .option('--server-path <path>', 'a CSV file under the server --data-root instead of --data')
    .requiredOption('--label <column>', 'the label column')
    .option('--name <name>', 'model name (default: the data file\'s name without its extension, each character other than A-Z a-z 0-9 . _ - made _, at most 64)');
  addPruneTuningOptions(prune)
    .option('--detach', 'print the bare job id on stdout and return without watching (J=$(fleetprune jobs prune ... --detach))')
    .action(async (flags: JobPruneFlags) => {
      if ((flags.data === undefined) === (flags.serverPath === undefined)) throw new UserError('give exactly one of --data and --server-path');
      if (flags.data === '' || flags.serverPath === '') throw new UserError(`${flags.data === '' ? '--data' : '--server-path'}: the path is empty`);
      // The tuning flags are checked here, so an error names the flag rather than the request field;
      // --tolerance only once the task is known (its unit, and so its range, depends on it), as prune does.
      const task = taskFlag(flags);
      parsePruneOptions(task ? flags : { ...flags, tolerance: undefined }, task ?? 'classification');
      let csv = '';
      let bytes: Buffer;
      if (flags.data) {
        let size: number;
        try {
          // A FIFO or device given as --data would block the read for ever (or never end it).
          const info = statSync(flags.data);
          if (!info.isFile()) throw new Error('not a regular file');
          size = info.size;
        } catch (error) {
          throw new UserError(`--data: cannot read ${flags.data} (${errorMessage(error)})`);
        }
        // Read whole, a file past what one string holds failed as an internal error; no server takes it anyway.
        if (size > MAX_JOB_DATA_BYTES) throw dataTooLargeForAnyServer(flags.data, size);
        try {
          bytes = readFileSync(flags.data);
        } catch (error) {
          throw new UserError(`--data: cannot read ${flags.data} (${errorMessage(error)})`);
        }
        // A workbook, a gzip file or a Windows-1252 export is named here, as prune names it.
        csv = decodeDataText(bytes, `--data ${flags.data}`);
        // Named here as prune names it: sent on, the server saw its NUL characters, not its encoding.
        if (looksLikeUtf16(csv)) throw new UserError(`--data ${flags.data}: the file is UTF-16 text, not UTF-8; save it as CSV in UTF-8`);
        if (csv.trim() === '') throw new UserError(`--data: ${flags.data} is empty`);
      }
      const source = flags.data ?? flags.serverPath!;
      const name = checkedModelName(flags.name ?? modelNameFromFile(source));
      // --tolerance is accuracy points or an MSE percentage: its unit needs the task, which the
      // server would infer only after the options were read (a regression's 10 became 10 points).
      // --loss-tolerance applies to classification only: refused for a regression data set, as prune refuses it.
      let optionsTask = task;
      if ((flags.tolerance !== undefined || (flags.lossTolerance !== undefined && flags.data)) && !optionsTask) {
        if (!flags.data) throw new UserError('--tolerance: give --task with --server-path (the tolerance is accuracy points for classification, an MSE percentage for regression)');
        optionsTask = parseDataset(csv, { label: flags.label }, flags.data).task;
        parsePruneOptions(flags, optionsTask);
      }
      const options = Object.fromEntries(Object.entries(pruneOptionsFromFlags(flags, optionsTask ?? 'classification')).filter(([, value]) => value !== undefined));
      await withConnection(flags, async (connection) => {
        const job = await connection
          .unary<GrpcJob>('Jobs', 'StartPrune', {
            name,
            label: flags.label,
            task: flags.task ?? '',
            csv,
            path: flags.serverPath ?? '',
            options_json: Object.keys(options).length > 0 ? JSON.stringify(options) : '',
          }, { deadlineMs: START_PRUNE_DEADLINE_MS })
          .catch((error: unknown) => {
            throw flags.data && isMessageTooLarge(error) ? dataTooLarge(flags.data, csv, error) : namingFlags(error, flags);
          });
        // Detached, stdout is the bare id alone, for `J=$(fleetprune jobs prune ... --detach)`;
        // the human line goes to stderr either way.
        if (flags.detach) {
          process.stdout.write(`${job.id}\n`);
          process.stderr.write(`started job ${job.id}; follow it with: fleetprune jobs watch ${job.id}\n`);
          return;
        }
        process.stderr.write(`job ${job.id}\n`);
        await watch(connection, job.id, { started: true });
      });
    });

  withConnectionOptions(jobs.command('list').description('recent jobs, newest first'))
    .option('--limit <n>', 'at most this many (1-1000; default 100)', parseLimit)
    .option('--offset <n>', 'skip this many of the newest first (default 0): the next page is at the offset the last line names', parseOffset)
    .option('--json', 'print JSON (as GET /api/jobs: the jobs, total and more)')
    .action(async (flags: ConnectionFlags & { limit?: number; offset?: number; json?: boolean }) => {
      const offset = flags.offset ?? 0;
      await withConnection(flags, async (connection) => {
        const { jobs: found, total, more } = await connection.unary<{ jobs: GrpcJobRecord[]; total: number; more: boolean }>('Jobs', 'ListJobs', { limit: flags.limit ?? 0, offset });
        if (flags.json) return void process.stdout.write(`${JSON.stringify({ jobs: found.map(jobJson), more, total }, null, 2)}\n`);
        // stdout holds the table alone (for scripts); the notes go to stderr, as rollout list's do.
        if (found.length === 0) return void process.stderr.write(offset > 0 && total > 0 ? `no jobs at --offset ${offset} (there are ${total})\n` : 'no jobs\n');
        const rows = found.map((job) => [job.id, job.state, job.created_at, job.created_by, job.node || '-', jobOutcome(job)]);
        process.stdout.write(formatTable([['ID', 'STATE', 'CREATED', 'BY', 'NODE', 'RESULT'], ...rows]));
        const footer = pageFooter('jobs', { offset, shown: found.length, total, more });
        if (footer) process.stderr.write(`${footer}\n`);
      });
    });

  withConnectionOptions(jobs.command('show <id>').description('one job: what it was asked, its state or progress, and what it registered or why it failed'))
    .option('--json', 'print JSON (as GET /api/jobs/:id)')
    .action(async (id: string, flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const job = await connection.unary<GrpcJobRecord>('Jobs', 'GetJob', { id });
        process.stdout.write(flags.json ? `${JSON.stringify(jobJson(job), null, 2)}\n` : formatJob(job));
      });
    });

  withConnectionOptions(jobs.command('watch <id>').description('follow a job until it finishes (exit 1 when it failed, 4 when it was cancelled)')).action(async (id: string, flags: ConnectionFlags) => {
    await withConnection(flags, (connection) => watch(connection, id));
  });

  withConnectionOptions(jobs.command('cancel <id>').description('cancel a queued or running job: it ends cancelled, and nothing is registered')).action(
    async (id: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        const job = await connection.unary<GrpcJob>('Jobs', 'CancelJob', { id });
        process.stdout.write(`${id}: ${job.state}${job.error ? ` (${job.error})` : ''}\n`);
      });
    },
  );
}

/** `started`: this command started the job, so a watch lost before its first event must not read as a call that changed nothing. */
async function watch(connection: ServerConnection, id: string, options: { started?: boolean } = {}): Promise<void> {
  // Ctrl-C stops the watching, not the job, which runs on the server: says so, and how to stop it.
  const stopWatching = onStopSignals((signal) => {
    process.stderr.write(`fleetprune: stopped following job ${id}; it goes on on the server (\`fleetprune jobs watch ${id}\` follows it again, \`fleetprune jobs cancel ${id}\` stops it)\n`);
    process.exit(128 + osConstants.signals[signal]);
  });
  try {
    await followJob(connection, id, options.started === true);
  } finally {
    stopWatching();
  }
}

async function followJob(connection: ServerConnection, id: string, started: boolean): Promise<void> {
  let final: GrpcJob | undefined;
  let lastLine = '';
  const streamed = connection.stream<{ job?: GrpcJob; progress?: { phase: string; done: number; total: number; detail: string } }>(
    'Jobs',
    'WatchJob',
    { id },
    (event) => {
      if (event.job) {
        final = event.job;
        process.stderr.write(`${id}: ${event.job.state}\n`);
      } else if (event.progress) {
        const { phase, done, total, detail } = event.progress;
        const line = `${phase} ${done}/${total}${detail ? ` ${detail}` : ''}`;
        if (line !== lastLine) process.stderr.write(`  ${line}\n`);
        lastLine = line;
      }
    },
  );
  await streamed.catch((error: unknown) => {
    // Lost before its first event: after a start the job exists all the same (a retry would start
    // another); a plain watch asked for nothing and says so (try again).
    throw final || started ? watchEndedEarly({ noun: 'job', id, afterDown: `: \`fleetprune jobs watch ${id}\` shows how the job ended` }, error) : error;
  });
  if (!final) throw new UserError(`job ${id}: the stream ended without a state`);
  if (final.state === 'failed') throw new UserError(`job ${id} failed: ${final.error}`, { exitCode: 1 });
  // Not a success, and not a fault either: a script can tell the two apart (README, exit codes).
  if (final.state === 'cancelled') throw new UserError(`job ${id} was cancelled${final.error ? ` (${final.error})` : ''}`, { exitCode: JOB_CANCELLED_EXIT_CODE });
  // A state this CLI does not know (a newer server's) is no success it can vouch for.
  if (final.state !== 'succeeded') throw new UserError(`job ${id} ended ${final.state}${final.error ? `: ${final.error}` : ''}`, { exitCode: 1 });
  const result = JSON.parse(final.result_json) as { general: { model: string; version: string }; pruned: { model: string; version: string }; summary?: { warnings?: string[] } };
  process.stdout.write(`registered ${result.general.model}@${result.general.version} (general) and ${result.pruned.model}@${result.pruned.version} (pruned)\n`);
  // What a local prune prints about its data (a row-number column, float32 rounding, ε outside
  // tolerance), here too: the models are registered, but the one who asked should hear of it.
  for (const warning of result.summary?.warnings ?? []) process.stderr.write(`warning: ${printable(warning)}\n`);
}

/**
 * A refusal naming StartPrune's `csv` or `path` field (`csv: no label column "x"`) names the flag
 * and file the user gave instead: they never wrote a field called csv.
 */
function namingFlags(error: unknown, flags: JobPruneFlags): unknown {
  if (!(error instanceof UserError)) return error;
  // The server's names for an option the data's task ignores: the only one the CLI can send so is
  // --loss-tolerance (--tolerance is sent for the task --task gives), found regression data at --server-path.
  if (error.message.startsWith('options_json.toleranceLossFraction: applies to classification only')) {
    return new UserError(LOSS_TOLERANCE_FOR_REGRESSION, { exitCode: error.exitCode, cause: error });
  }
  const field = /^(csv|path): /.exec(error.message)?.[1];
  if (field === undefined) return error;
  const named = field === 'csv' ? (flags.data === undefined ? undefined : `--data ${flags.data}`) : flags.serverPath === undefined ? undefined : '--server-path';
  if (named === undefined) return error;
  return new UserError(`${named}: ${error.message.slice(field.length + 2)}`, { exitCode: error.exitCode, cause: error });
}

/** The server refused the request's size before reading it (grpc-js: RESOURCE_EXHAUSTED, "Received message larger than max"). */
function isMessageTooLarge(error: unknown): boolean {
  const cause = error instanceof UserError ? (error.cause as { code?: number; details?: string } | undefined) : undefined;
  return cause?.code === GrpcStatus.RESOURCE_EXHAUSTED && /larger than max/i.test(cause.details ?? '');
}

/** --data too large for the server's gRPC message limit, named as the server names it for a smaller file over --max-body-bytes. */
function dataTooLarge(file: string, csv: string, error: unknown): UserError {
  return new UserError(`--data: ${file} is ${Buffer.byteLength(csv, 'utf8')} bytes, more than the server accepts (its --max-body-bytes)`, { cause: error });
}

/**
 * The most CSV a server's job request can carry: a server takes --max-body-bytes (16 MiB by
 * default), and whatever it is set to, the CSV is one string on both sides, which holds at most
 * this many characters (a byte each in the ASCII a CSV mostly is).
 */
const MAX_JOB_DATA_BYTES = constants.MAX_STRING_LENGTH;

/** --data larger than any server accepts, refused before it is read. */
function dataTooLargeForAnyServer(file: string, size: number): UserError {
  return new UserError(`--data: ${file} is ${size} bytes, more than any server accepts (at most ${MAX_JOB_DATA_BYTES} bytes of CSV, and only with its --max-body-bytes raised that far from the 16 MiB default)`);
}

