import { InvalidArgumentError, type Command } from 'commander';
import { parseInteger } from '../../shared/cli/option-parsers.ts';
import { UserError } from '../../shared/util/errors.ts';
import { parseLimit } from './bounded-options.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { namingFlags } from './request-field-flags.ts';
import { refuseEmpty } from './non-empty.ts';

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

/** A value as a shell takes it back whole: as it is when plain, else in single quotes (a `*` unquoted would be a glob). */
function shellWord(value: string): string {
  return /^[A-Za-z0-9_.:@\/=+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

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
    .option('--action <action>', 'only entries of this action (rollout.assign), or, ending in *, of the actions it begins (rollout.*)')
    .option('--actor <actor>', 'only entries by this actor: token:ID (the ID tokens list shows), system:rollout (what rollouts send devices), rollout-controller (their version statuses) or system')
    .option('--target <target>', 'only entries of this target (device:osaka-07, rollout:ro-…), or, ending in *, of the targets it begins: wine@* (the versions of wine), wine:* (its aliases), model:wine@* (their assignments)')
    .option('--json', 'print JSON (the entries of GET /api/audit)')
    .action(async (flags: ConnectionFlags & { limit?: number; before?: number; json?: boolean; action?: string; actor?: string; target?: string }) => {
      // Empty is "no filter" on the wire: `--actor "$WHO"` with WHO unset would list everyone's changes as theirs.
      for (const [flag, value] of [['--action', flags.action], ['--actor', flags.actor], ['--target', flags.target]] as const) refuseEmpty(value, flag, 'every entry');
      await withConnection(flags, async (connection) => {
        const filter = { action: flags.action ?? '', actor: flags.actor ?? '', target: flags.target ?? '' };
        const { entries, filtered } = await connection
          .unary<{ entries: GrpcAuditEntry[]; filtered?: boolean }>('Audit', 'ListAudit', { limit: flags.limit ?? 0, before: flags.before ?? 0, ...filter })
          .catch((error: unknown) => {
            throw namingFlags(error, { action: '--action', actor: '--actor', target: '--target' });
          });
        // A server older than the filters ignores them (proto3 drops unknown fields): its answer is the
        // whole log, which must not be shown as the entries asked for.
        const asked = Object.entries({ '--action': flags.action, '--actor': flags.actor, '--target': flags.target }).filter(([, value]) => value !== undefined).map(([flag]) => flag);
        if (asked.length > 0 && !filtered) throw new UserError(`the server at ${connection.address} does not filter the audit log (a server older than this command): upgrade it, or leave out ${asked.join(', ')}`);
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
        const again = [flags.action && `--action ${shellWord(flags.action)}`, flags.actor && `--actor ${shellWord(flags.actor)}`, flags.target && `--target ${shellWord(flags.target)}`, flags.limit !== undefined && `--limit ${flags.limit}`]
          .filter(Boolean)
          .map((flag) => ` ${flag}`)
          .join('');
        // Entry 1 is the first there is: nothing older follows it.
        const last = entries.at(-1);
        if (entries.length === limit && last && Number(last.id) > 1) process.stderr.write(`older entries may follow: fleetprune audit${again} --before ${last.id}\n`);
        if (entries.length === 0 && (flags.action || flags.actor || flags.target)) process.stderr.write('no entries match\n');
      });
    });
}
