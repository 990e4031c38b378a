import { isUtf8 } from 'node:buffer';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { Metadata, status as GrpcStatus, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { InvalidArgumentError, type Command } from 'commander';
import { UserError } from '../../shared/util/errors.ts';
import { describeFsError } from '../../shared/util/fs-checks.ts';
import { printable } from '../rollout/operator-text.ts';
import { parseRolloutSpec } from '../rollout/rollout-spec.ts';
import { MAX_SPEC_BYTES } from '../rollout/spec-document.ts';
import { specWarnings } from '../rollout/spec-warnings.ts';
import { watchEndedEarly, withConnection, withConnectionOptions, type ConnectionFlags, type ServerConnection } from './grpc-client.ts';
import { rolloutJson } from './json-views.ts';
import { pageFooter, parseDeviceStates, parseLimit, parseOffset } from './bounded-options.ts';
import { refuseEmpty } from './non-empty.ts';
import { createRolloutProgress, decisionLine, rolloutLine, type GrpcDecision, type GrpcRollout } from './rollout-display.ts';

interface StartFlags extends ConnectionFlags {
  file: string;
  watch?: boolean;
}

export function registerRolloutCommand(program: Command): void {
  const rollout = program.command('rollout').description('staged rollouts of a model version to the fleet (over gRPC); see docs/rollout-spec.md');

  withConnectionOptions(rollout.command('start').description('start a rollout from a spec file (YAML or JSON)'))
    .requiredOption('-f, --file <spec>', 'the rollout spec (- for stdin)')
    .option('--watch', 'follow it until it ends (without it, stdout is the bare rollout id)')
    .action(async (flags: StartFlags) => {
      const spec = readSpec(flags.file);
      await withConnection(flags, async (connection) => {
        const started = await connection.unary<GrpcRollout>('Rollouts', 'StartRollout', { spec });
        // Without --watch, stdout is the bare id alone, for `ID=$(fleetprune rollout start -f spec)`;
        // the warnings and the human line go to stderr.
        for (const warning of started.warnings ?? []) process.stderr.write(`warning: ${printable(warning)}\n`);
        if (!flags.watch) {
          process.stdout.write(`${started.id}\n`);
          process.stderr.write(`started rollout ${started.id} of ${started.model} ${started.candidate_version}; follow it with: fleetprune rollout watch ${started.id}\n`);
          return;
        }
        process.stderr.write(`started rollout ${started.id} of ${started.model} ${started.candidate_version}\n`);
        await watch(connection, started.id, started.step_count, { started: true });
      });
    });

  rollout
    .command('validate')
    .description('check a spec file here, without a server: errors as start would give them, and warnings about analysis that decides nothing')
    .requiredOption('-f, --file <spec>', 'the rollout spec (- for stdin)')
    .action((flags: { file: string }) => {
      const spec = parseRolloutSpec(readSpec(flags.file), 'spec');
      const warnings = specWarnings(spec);
      for (const warning of warnings) process.stdout.write(`warning: ${printable(warning)}\n`);
      process.stdout.write(`valid: ${spec.model} ${printable(spec.candidateVersion)} in ${spec.steps.length} step${spec.steps.length === 1 ? '' : 's'}${warnings.length ? `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}` : ''}\n`);
    });

  withConnectionOptions(rollout.command('list').description('rollouts, newest first'))
    .option('--model <name>', 'only this model')
    .option('--limit <n>', 'at most this many, 1-1000 (default 100)', parseLimit)
    .option('--offset <n>', 'skip this many of the newest first (default 0): the next page is at the offset the last line names', parseOffset)
    .option('--containing <id>', 'instead of --offset: the page that holds this rollout')
    .option('--json', 'print JSON (as GET /api/rollouts: the rollouts, total, more and the offset the page starts at)')
    .action(async (flags: ConnectionFlags & { model?: string; limit?: number; offset?: number; containing?: string; json?: boolean }) => {
      refuseEmpty(flags.model, '--model', "every model's rollouts");
      refuseEmpty(flags.containing, '--containing', 'the first page (without --offset)');
      if (flags.containing !== undefined && flags.offset !== undefined) throw new UserError('--offset and --containing: give one of them, not both');
      await withConnection(flags, async (connection) => {
        const answer = await connection.unary<{ rollouts: GrpcRollout[]; total: number; more: boolean; offset: number }>('Rollouts', 'ListRollouts', {
          model: flags.model ?? '',
          limit: flags.limit ?? 0,
          offset: flags.offset ?? 0,
          containing: flags.containing ?? '',
        });
        const { rollouts, total, more } = answer;
        // Where the page starts: the server says so (the one holding --containing); a server from before it did, the offset asked.
        const offset = answer.offset || (flags.offset ?? 0);
        // A mistyped --model lists nothing, as a model without rollouts does: say which it is.
        if (total === 0 && flags.model !== undefined) await assertModelKnown(connection, flags.model);
        if (flags.json) return void process.stdout.write(`${JSON.stringify({ rollouts: rollouts.map(rolloutJson), more, total, offset }, null, 2)}\n`);
        for (const r of rollouts) process.stdout.write(`${rolloutLine(r)}\n`);
        // stdout stays one rollout a line (for scripts); the notes go to stderr.
        if (rollouts.length === 0) process.stderr.write(offset > 0 && total > 0 ? `no rollouts at --offset ${offset} (there are ${total})\n` : 'no rollouts\n');
        const footer = pageFooter('rollouts', { offset, shown: rollouts.length, total, more });
        if (footer) process.stderr.write(`${footer}\n`);
      });
    });

  withConnectionOptions(rollout.command('status <id>').description('state, steps and the decision log of one rollout'))
    .option('--json', 'print the full detail view as JSON')
    .option('--devices <n>', 'device states in the --json detail (default 1000: refused, unreachable, retrying and pending first)', parseDeviceStates)
    .action(async (id: string, flags: ConnectionFlags & { json?: boolean; devices?: number }) => {
      // The text view shows no device states: the flag would do nothing there, without a word.
      if (flags.devices !== undefined && !flags.json) throw new UserError('--devices: only with --json (the text view shows no device states)');
      await withConnection(flags, async (connection) => {
        const { rollout: r, detail_json } = await connection.unary<{ rollout: GrpcRollout; detail_json: string }>('Rollouts', 'GetRollout', { id, device_states: flags.devices ?? 0 });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(JSON.parse(detail_json), null, 2)}\n`);
          return;
        }
        const detail = JSON.parse(detail_json) as { steps: { index: number; description: string; status: string; measurements: number }[]; decisions: { id: string; at: string; kind: string; stepIndex: number; verdict: string; message: string; by?: string }[]; warnings?: string[] };
        process.stdout.write(`${rolloutLine(r)}\n`);
        for (const step of detail.steps) {
          const mark = { done: '✓', skipped: '»', current: '▶', pending: ' ', stopped: '✗' }[step.status] ?? ' ';
          const note = step.status === 'skipped' ? ' (skipped by a promotion)' : '';
          process.stdout.write(`  ${mark} ${step.index + 1}. ${printable(step.description)}${step.measurements ? ` (${step.measurements} measurement${step.measurements === 1 ? '' : 's'})` : ''}${note}\n`);
        }
        // The warnings its start gave (an older server's detail has none): also in the decision log, but that can be long.
        for (const warning of detail.warnings ?? []) process.stdout.write(`warning: ${printable(warning)}\n`);
        process.stdout.write('decisions:\n');
        for (const d of detail.decisions) {
          process.stdout.write(`  ${decisionLine({ id: d.id, at: d.at, kind: d.kind, step_index: d.stepIndex, verdict: d.verdict, message: d.message, by: d.by ?? '', measurement_json: '' }, r.step_count)}\n`);
        }
      });
    });

  withConnectionOptions(rollout.command('watch <id>').description('follow a rollout live until it completes, fails, is aborted or rolled back')).action(
    async (id: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        // The step count (fixed by the spec) numbers the decisions, which the stream may send before any state.
        const { rollout: r } = await connection.unary<{ rollout: GrpcRollout }>('Rollouts', 'GetRollout', { id, device_states: 1 });
        await watch(connection, id, r.step_count);
      });
    },
  );

  withConnectionOptions(rollout.command('pause <id>').description('pause a rollout where it is (in a timed pause step: hold it there until resumed)')).action(async (id: string, flags: ConnectionFlags) => {
    await withConnection(flags, async (connection) => printState(await connection.unary<GrpcRollout>('Rollouts', 'PauseRollout', { id })));
  });
  withConnectionOptions(
    rollout
      .command('resume <id>')
      .description(
        'resume a paused rollout (a held timed pause goes on until it would have ended); it names the pause it read, so a second resume ' +
          'racing it is refused rather than ending the pause the first one left',
      ),
  ).action(async (id: string, flags: ConnectionFlags) => {
    await withConnection(flags, async (connection) => {
      // The pause as read now: a rollout that moves on before the resume arrives (another operator's resume) refuses it.
      const { rollout: r } = await connection.unary<{ rollout: GrpcRollout }>('Rollouts', 'GetRollout', { id, device_states: 1 });
      printState(await connection.unary<GrpcRollout>('Rollouts', 'ResumeRollout', { id, ...(r.pause_since ? { paused_since: r.pause_since } : {}) }));
    });
  });

  withConnectionOptions(rollout.command('promote <id>').description('promote to 100% now, skipping the remaining steps and analyses'))
    .option('--step', 'skip only the current step (refused if the rollout moves past it first: two racing promote --step skip one step, not two; run again after it took effect, it skips the next one: give --from-step to make a repeat safe)')
    .option('--from-step <n>', 'with --step: the step to skip, as `rollout status` numbers it (default: the step the rollout is at now)', parseStepNumber)
    .action(async (id: string, flags: ConnectionFlags & { step?: boolean; fromStep?: number }) => {
      if (flags.fromStep !== undefined && !flags.step) throw new UserError('--from-step: only with --step');
      await withConnection(flags, async (connection) => {
        let fromStepIndex = flags.fromStep === undefined ? undefined : flags.fromStep - 1;
        // The step is read first and sent with the command: the server promotes only from that step.
        if (flags.step && fromStepIndex === undefined) fromStepIndex = (await connection.unary<{ rollout: GrpcRollout }>('Rollouts', 'GetRollout', { id, device_states: 1 })).rollout.step_index;
        printState(await connection.unary<GrpcRollout>('Rollouts', 'PromoteRollout', { id, step: flags.step ?? false, ...(fromStepIndex === undefined ? {} : { from_step_index: fromStepIndex }) }));
      });
    });

  const withReason = (name: 'abort' | 'rollback', method: string, description: string) =>
    withConnectionOptions(rollout.command(`${name} <id>`).description(description))
      .option('--reason <text>', 'recorded in the decision log and the audit log')
      .action(async (id: string, flags: ConnectionFlags & { reason?: string }) => {
        refuseEmpty(flags.reason, '--reason', 'no reason');
        await withConnection(flags, async (connection) => printState(await connection.unary<GrpcRollout>('Rollouts', method, { id, reason: flags.reason ?? '' })));
      });
  withReason('abort', 'AbortRollout', 'abort: revert every device the rollout touched');
  withReason('rollback', 'RollbackRollout', 'roll back (even after full promotion, unless a newer rollout of the model promoted since): devices to their baseline, previous production restored (and sent to devices given the promoted version outside the rollout)');
}

function readSpec(file: string): string {
  let raw: Buffer;
  try {
    raw = readAtMost(file === '-' ? 0 : file, MAX_SPEC_BYTES + 1);
  } catch (error) {
    throw new UserError(`--file: cannot read ${file} (${describeFsError(error)})`);
  }
  // Said here, as the server would say it: a file over its gRPC message limit (a model file
  // passed by mistake) would otherwise be answered "Received message larger than max".
  if (raw.length > MAX_SPEC_BYTES) {
    const size = file === '-' ? undefined : fileSize(file);
    throw new UserError(`--file: ${file === '-' ? 'stdin' : file} is ${size === undefined ? `over ${MAX_SPEC_BYTES} bytes` : `${size} bytes`}; a rollout spec is at most ${MAX_SPEC_BYTES}`);
  }
  // Read as UTF-8, a Latin-1 "café" became "caf\uFFFD": a selector value that matches no device,
  // so a NotIn excluded nothing and the rollout took the whole fleet. UTF-16 was refused as
  // "contains a NUL character", which says nothing of the encoding.
  const source = file === '-' ? 'stdin' : file;
  if (raw.includes(0) || (raw.length >= 2 && ((raw[0] === 0xff && raw[1] === 0xfe) || (raw[0] === 0xfe && raw[1] === 0xff)))) {
    throw new UserError(`--file: ${source} is not UTF-8 text (UTF-16?); save the spec as UTF-8`);
  }
  if (!isUtf8(raw)) throw new UserError(`--file: ${source} is not UTF-8 text (Latin-1 or Windows-1252?); save the spec as UTF-8, or convert it (iconv -f cp1252 -t utf-8)`);
  return raw.toString('utf8');
}

/** A regular file's size; undefined for anything else (a device, a pipe). */
function fileSize(path: string): number | undefined {
  try {
    const info = statSync(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The first `limit` bytes of a file or descriptor, and no more: a device that never ends
 * (/dev/zero, /dev/urandom) or a huge file is read only that far. A pipe (stdin, or `-f <(…)`)
 * is read until its writer closes it, as before.
 */
function readAtMost(source: string | number, limit: number): Buffer {
  const fd = typeof source === 'number' ? source : openSync(source, 'r');
  try {
    const buffer = Buffer.alloc(Math.min(limit, 64 * 1024));
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < limit) {
      const read = readSync(fd, buffer, 0, Math.min(buffer.length, limit - total), null);
      if (read === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, read)));
      total += read;
    }
    return Buffer.concat(chunks);
  } finally {
    if (typeof source !== 'number') closeSync(fd);
  }
}

/** `promote --from-step`: a step as `rollout status` numbers them, from 1. */
function parseStepNumber(value: string): number {
  if (!/^\d{1,6}$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError('must be a step number from 1, as rollout status shows it');
  return Number(value);
}

function printState(r: GrpcRollout & { warnings?: string[] }): void {
  process.stdout.write(`${rolloutLine(r)}\n`);
  // As a start's: the line stays alone on stdout (for scripts), the warnings go to stderr.
  for (const warning of r.warnings ?? []) process.stderr.write(`warning: ${printable(warning)}\n`);
}

/** Streams a rollout's decisions and states; returns when it reaches a terminal phase. */
/** `started`: this command started the rollout, so a watch lost before its first event must not read as a call that changed nothing. */
async function watch(connection: ServerConnection, id: string, stepCount: number, options: { started?: boolean } = {}): Promise<void> {
  const progress = createRolloutProgress(stepCount);
  let final: GrpcRollout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const client = connection.client('Rollouts') as unknown as Record<string, Function>;
      const metadata = connection.metadata as Metadata;
      const call = client.WatchRollout!.call(client, { id }, metadata);
      // Ended before its first event, the watch never got going: the error is told as it is (a refused connection, a name that does not resolve).
      let watching = false;
      call.on('data', (event: { state?: GrpcRollout; decision?: GrpcDecision }) => {
        watching = true;
        if (event.decision) progress.decision(event.decision);
        if (event.state) {
          progress.state(event.state);
          if (event.state.terminal) {
            final = event.state;
            call.cancel();
            resolve();
          }
        }
      });
      // grpc-js may also end the stream after an error: the end must not settle it first (explain() takes a turn or more).
      let failed = false;
      call.on('error', (error: GrpcError) => {
        if (error.code === GrpcStatus.CANCELLED && final) return resolve();
        failed = true;
        const afterDown = `, and the rollout goes on: \`fleetprune rollout watch ${id}\` follows it again`;
        void connection.explain(error, 'WatchRollout').then((described) => reject(watching || options.started ? watchEndedEarly({ noun: 'rollout', id, afterDown }, described) : described), reject);
      });
      call.on('end', () => failed || resolve());
    });
  } finally {
    progress.stop();
  }
  if (!final) throw new UserError(`rollout ${id}: the stream ended before the rollout finished`, { exitCode: 1 });
  // The summary, once (the terminal state is not also shown as an event); its outcome and reason are in it.
  process.stdout.write(`${rolloutLine(final)}\n`);
  if (final.phase !== 'Completed') throw new UserError(`rollout ${id} ended ${final.phase}`, { exitCode: 1 });
}


/** Refuses (exit 2) a --model that names no registered model; a registry that answers otherwise is not in the way. */
async function assertModelKnown(connection: ServerConnection, model: string): Promise<void> {
  try {
    await connection.unary('ModelRegistry', 'GetModel', { name: model });
  } catch (error) {
    if (!(error instanceof UserError) || (error.cause as { code?: number } | undefined)?.code !== GrpcStatus.NOT_FOUND) throw error;
    throw new UserError(`--model ${model}: no such model is registered, and no rollout names it (fleetprune models list names the models)`);
  }
}
