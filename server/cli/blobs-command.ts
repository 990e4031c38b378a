import { Option, type Command } from 'commander';
import { formatDuration } from '../../shared/util/duration.ts';
import { DEFAULT_BLOB_GC_AGE_S } from '../artifacts/blob-garbage-collector.ts';
import { parseBlobGcMinAge } from './bounded-options.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { gcJson, type GrpcGcResult } from './json-views.ts';
import { registerBlobsCheckCommand } from './blobs-check-command.ts';

export function registerBlobsCommand(program: Command): void {
  const blobs = program.command('blobs').description('the server\'s artifact file store (admin only, over gRPC)');
  withConnectionOptions(
    blobs
      .command('gc')
      .description('remove stored files that no registered version lists (left by interrupted or refused pushes)'),
  )
    .option('--dry-run', 'list what would be removed, remove nothing')
    .addOption(
      new Option('--min-age <duration>', 'keep unreferenced files stored less than this long ago: 90s, 30m, 1h, 7d, 2w (at least 60s, at most 3650d)')
        .argParser(parseBlobGcMinAge)
        // The value is in seconds; the help shows it the way the option is written.
        .default(DEFAULT_BLOB_GC_AGE_S, formatDuration(DEFAULT_BLOB_GC_AGE_S * 1000)),
    )
    .option('--json', 'print JSON (as POST /api/blobs/gc)')
    .action(async (flags: ConnectionFlags & { dryRun?: boolean; minAge: number; json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const result = await connection.unary<GrpcGcResult>('Blobs', 'CollectGarbage', { dry_run: flags.dryRun ?? false, min_age_s: flags.minAge });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(gcJson(result), null, 2)}\n`);
          return;
        }
        if (result.removed.length > 0) {
          process.stdout.write(formatTable([['SHA256', 'BYTES'], ...result.removed.map((blob) => [blob.sha256, blob.bytes])]));
        }
        const verb = result.dry_run ? 'would remove' : 'removed';
        process.stderr.write(
          `${verb} ${result.removed.length} of ${result.scanned} files and ${result.stale_uploads} partial uploads (${result.freed_bytes} bytes); ` +
            `kept ${result.referenced} referenced and ${result.young} younger than ${flags.minAge} s\n`,
        );
      });
    });
  registerBlobsCheckCommand(blobs);
}
