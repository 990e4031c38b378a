import type { Command } from 'commander';
import { UserError } from '../../shared/util/errors.ts';
import { formatBytes } from '../../shared/util/format-bytes.ts';
import { printable } from '../../shared/util/printable.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { blobCheckJson, type GrpcBlobCheckEvent } from './json-views.ts';
import { drawsBars } from './terminal.ts';

/**
 * `fleetprune blobs check`: the artifact store's scrub (gRPC Blobs.CheckBlobs). Prints the missing
 * and damaged files, the versions that list them and the devices that hold those; exits 1 when it
 * found any, so a cron job or a restore script can act on it.
 */
export function registerBlobsCheckCommand(blobs: Command): void {
  withConnectionOptions(
    blobs
      .command('check')
      .description(
        'read every file a registered version lists and check it against its sha256 (after a restore, a disk error or files touched by hand): ' +
          'names the missing and damaged ones, the versions that list them and the devices that hold those, and moves damaged copies aside so a push uploads them again; exits 1 if it found any',
      ),
  )
    .option('--dry-run', 'report damaged copies, leave them where they are')
    .option('--json', 'print JSON (as POST /api/blobs/check)')
    .action(async (flags: ConnectionFlags & { dryRun?: boolean; json?: boolean }) => {
      const status = progressLine(process.stderr);
      let result: GrpcBlobCheckEvent['result'];
      await withConnection(flags, async (connection) => {
        try {
          await connection.stream<GrpcBlobCheckEvent>('Blobs', 'CheckBlobs', { dry_run: flags.dryRun ?? false }, (event) => {
            if (event.progress) status.show(event.progress);
            if (event.result) result = event.result;
          });
        } finally {
          status.end();
        }
      });
      if (!result) throw new UserError('the server ended the check without its result (an older server?)', { exitCode: 2 });
      const json = blobCheckJson(result);
      if (flags.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      else if (json.problems.length > 0) {
        process.stdout.write(
          formatTable([
            ['PROBLEM', 'SHA256', 'BYTES', 'VERSIONS', 'DEVICES (ACTIVE/CANDIDATE/PREVIOUS)', 'DETAIL'],
            ...json.problems.map((problem) => [
              problem.problem,
              problem.sha256,
              String(problem.bytes),
              problem.versions.map((use) => `${printable(use.model)}@${printable(use.version)} ${use.file}${use.aliases.length > 0 ? ` (${use.aliases.join(', ')})` : ''}${use.retired ? ' (retired)' : ''}`).join('; '),
              `${problem.devices.active}/${problem.devices.candidate}/${problem.devices.previous}`,
              problem.detail,
            ]),
          ]),
        );
      }
      const count = (kind: string) => json.problems.filter((problem) => problem.problem === kind).length;
      const damaged = count('damaged');
      const unreadable = count('unreadable');
      // Under --json the JSON says it all: stderr keeps to the one line of a refusal, as for every command.
      if (!flags.json) process.stderr.write(
        `checked ${json.blobs} files (${formatBytes(json.bytes)}) of ${json.versions} versions: ${json.sound} sound, ${count('missing')} missing, ${damaged} damaged` +
          `${damaged > 0 ? (json.dryRun ? ' (left in place: --dry-run)' : ` (moved aside: ${json.problems.filter((problem) => problem.setAside).length})`) : ''}` +
          `${unreadable > 0 ? `, ${unreadable} unreadable` : ''}\n`,
      );
      if (json.problems.length > 0) {
        // What to do, by kind: a push restores what is missing or damaged, not what the server cannot read.
        const lost = json.problems.length - unreadable;
        const steps = [
          ...(lost > 0 ? [`${lost} missing or damaged: \`fleetprune models push DIR\` of the artifacts that list them uploads them again`] : []),
          ...(unreadable > 0 ? [`${unreadable} unreadable: see each one's detail (the disk, the file's owner and mode, or something other than a file at its address), then check again`] : []),
        ];
        throw new UserError(`${json.problems.length} registered file${json.problems.length === 1 ? '' : 's'} to restore: ${steps.join('; ')}`, { exitCode: 1 });
      }
    });
}

/** On a terminal, one line rewritten in place as the check goes; elsewhere nothing (the result says it all). */
function progressLine(stream: NodeJS.WriteStream): { show(progress: { blobs: string; total_blobs: string; bytes: string; total_bytes: string }): void; end(): void } {
  if (!drawsBars(stream)) return { show: () => {}, end: () => {} };
  let shown = false;
  return {
    show(progress) {
      shown = true;
      stream.write(`\r\u001b[Kchecking: ${progress.blobs} of ${progress.total_blobs} files, ${formatBytes(Number(progress.bytes))} of ${formatBytes(Number(progress.total_bytes))}`);
    },
    end() {
      if (shown) stream.write('\r\u001b[K');
    },
  };
}
