import { InvalidArgumentError, type Command } from 'commander';
import { parseInteger } from '../../shared/cli/option-parsers.ts';
import { parseLimit } from './bounded-options.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { namingFlags } from './request-field-flags.ts';

/** An entry as the AuditEntry message carries it. */
interface GrpcAuditEntry {
  id: string;
  at: string;
  actor: string;
  action: string;
  target: string;
  details_json: string;
}

/** The most characters of an entry's details a table row shows (--json has them whole). */
const DETAILS_SHOWN = 120;

/** `--before`: an entry id, a whole number from 1. */
function parseEntryId(value: string): number {
  const id = parseInteger(value);
  if (id < 1 || !Number.isSafeInteger(id)) throw new InvalidArgumentError('must be an entry id, a whole number from 1 (the ID column)');
  return id;
}

export function registerAuditCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('audit')
      .description('who changed what and when (the audit log), newest first: registrations, aliases, assignments, rollouts, tokens, devices; page back with --before the last ID shown'),
  )
    .option('--limit <n>', 'at most this many entries (1-1000; default 100)', parseLimit)
    .option('--before <id>', 'entries older than this one (its ID), to page back', parseEntryId)
    .option('--action <action>', 'only entries of this action (rollout.assign), or of the actions it begins when it ends in a dot (rollout.)')
    .option('--actor <name>', 'only entries by this actor (a token name, or device:ID)')
    .option('--target <text>', 'only entries whose target begins so: wine@ (the versions of wine), wine: (its aliases), model:wine@ (their assignments), device:osaka-07, rollout:ro-…')
    .option('--json', 'print JSON (the entries of GET /api/audit)')
    .action(async (flags: ConnectionFlags & { limit?: number; before?: number; json?: boolean; action?: string; actor?: string; target?: string }) => {
      await withConnection(flags, async (connection) => {
        const filter = { action: flags.action ?? '', actor: flags.actor ?? '', target: flags.target ?? '' };
        const { entries } = await connection
          .unary<{ entries: GrpcAuditEntry[] }>('Audit', 'ListAudit', { limit: flags.limit ?? 0, before: flags.before ?? 0, ...filter })
          .catch((error: unknown) => {
            throw namingFlags(error, { action: '--action', actor: '--actor', target: '--target' });
          });
        const details = (entry: GrpcAuditEntry) => (entry.details_json ? (JSON.parse(entry.details_json) as Record<string, unknown>) : {});
        if (flags.json) {
          const json = entries.map((entry) => ({ id: Number(entry.id), at: entry.at, actor: entry.actor, action: entry.action, target: entry.target, details: details(entry) }));
          process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
          return;
        }
        const shown = (entry: GrpcAuditEntry) => {
          const text = entry.details_json === '{}' ? '-' : entry.details_json;
          return text.length > DETAILS_SHOWN ? `${text.slice(0, DETAILS_SHOWN - 1)}…` : text;
        };
        process.stdout.write(formatTable([['ID', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DETAILS'], ...entries.map((entry) => [entry.id, entry.at, entry.actor, entry.action, entry.target, shown(entry)])]));
        const limit = flags.limit ?? 100;
        const again = [flags.action && `--action ${flags.action}`, flags.actor && `--actor ${flags.actor}`, flags.target && `--target ${flags.target}`].filter(Boolean).map((flag) => ` ${flag}`).join('');
        if (entries.length === limit) process.stderr.write(`older entries may follow: fleetprune audit${again} --before ${entries.at(-1)!.id}\n`);
        if (entries.length === 0 && (flags.action || flags.actor || flags.target)) process.stderr.write('no entries match\n');
      });
    });
}
