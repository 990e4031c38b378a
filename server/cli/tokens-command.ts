import type { Command } from 'commander';
import { parseChoice, parseLifetimeSeconds } from '../../shared/cli/option-parsers.ts';
import { ROLES } from '../auth/roles.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { tokenJson, type GrpcToken } from './json-views.ts';
import { refuseEmpty } from './non-empty.ts';
import { TokenLifetimeSchema } from '../auth/token-lifetime.ts';
import { errorMessage, UserError } from '../../shared/util/errors.ts';

export function registerTokensCommand(program: Command): void {
  const tokens = program.command('tokens').description('bearer tokens (admin only, over gRPC)');
  withConnectionOptions(tokens.command('create').description('create a token and print it (shown only this once)'))
    .requiredOption('--role <role>', 'device, viewer, operator or admin', parseChoice(ROLES))
    .option('--label <text>', 'what the token is for')
    .option('--expires-in <duration>', 'the token stops working this long from now, such as 90d, 2w or 12h (at most ten years); default: never', parseLifetimeSeconds)
    .action(async (flags: ConnectionFlags & { role: string; label?: string; expiresIn?: number }) => {
      refuseEmpty(flags.label, '--label', 'the default label, "ROLE token"');
      if (flags.expiresIn !== undefined && !TokenLifetimeSchema.safeParse(flags.expiresIn).success) {
        throw new UserError('--expires-in: must be between 1s and ten years (3650d)');
      }
      await withConnection(flags, async (connection) => {
        const created = await connection.unary<{ token: string; record: { id: string; role: string; expires_at: string } }>('Tokens', 'CreateToken', {
          role: flags.role,
          label: flags.label ?? '',
          expires_in_s: flags.expiresIn ?? 0,
        });
        if (flags.expiresIn !== undefined && !created.record.expires_at) {
          // A server older than expiring tokens drops the field: the token it made never expires.
          // Not handed out as if it did: revoked again at once.
          const undone = await connection.unary('Tokens', 'RevokeToken', { id: created.record.id }).then(
            () => `so it was revoked again`,
            (error: unknown) => `and revoking it failed (${errorMessage(error)}): revoke it (fleetprune tokens revoke ${created.record.id})`,
          );
          throw new UserError(`--expires-in: the server does not take token expiries (it is older than this CLI); the token it made (${created.record.id}) would never expire, ${undone}`);
        }
        process.stdout.write(`${created.token}\n`);
        const expiry = created.record.expires_at ? `, expiring at ${created.record.expires_at}` : '';
        process.stderr.write(`created ${created.record.role} token ${created.record.id}${expiry}; store it now, it is not shown again\n`);
      });
    });
  withConnectionOptions(tokens.command('list').description('list tokens: id, role, label, created, expiry, revoked (never secrets)'))
    .option('--json', 'print JSON (the tokens of GET /api/tokens)')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const { tokens: list } = await connection.unary<{ tokens: GrpcToken[] }>('Tokens', 'ListTokens', {});
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(list.map(tokenJson), null, 2)}\n`);
          return;
        }
        const now = Date.now();
        const expiry = (t: GrpcToken) => (t.expires_at ? `${t.expires_at}${Date.parse(t.expires_at) <= now ? ' (expired)' : ''}` : '-');
        // A label may be 200 characters: in full it would widen every row; --json has it whole.
        const rows = list.map((t) => [t.id, t.role, clipLabel(t.label), t.created_at, t.created_by, expiry(t), t.revoked_at || '-']);
        process.stdout.write(formatTable([['ID', 'ROLE', 'LABEL', 'CREATED', 'BY', 'EXPIRES', 'REVOKED'], ...rows]));
      });
    });
  withConnectionOptions(tokens.command('revoke').description('revoke a token: it stops working at once').argument('<id>', 'token id (from `tokens list`)'))
    .action(async (id: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        // A job accepted under the token is the server's work now: it goes on, and registers its
        // models as the token. Said, so that one started with a leaked token can be stopped. Read
        // before the revocation: a token revoking itself could not read them after it. (The newest
        // 1000 jobs: queued and running ones are among them.)
        const unfinished = await connection
          .unary<{ jobs: { id: string; state: string; created_by: string }[] }>('Jobs', 'ListJobs', { limit: 1000, offset: 0 })
          .then(({ jobs }) => jobs.filter((job) => job.created_by === `token:${id}` && (job.state === 'queued' || job.state === 'running')))
          .catch(() => []);
        await connection.unary('Tokens', 'RevokeToken', { id });
        process.stderr.write(`revoked token ${id}\n`);
        if (unfinished.length > 0) {
          const named = unfinished.map((job) => `${job.id} (${job.state})`).join(', ');
          process.stderr.write(`note: ${unfinished.length === 1 ? 'a job' : `${unfinished.length} jobs`} started with this token ${unfinished.length === 1 ? 'goes' : 'go'} on and will register ${unfinished.length === 1 ? 'its' : 'their'} models as it: ${named}; fleetprune jobs cancel ID stops one\n`);
        }
      });
    });
}

/** Labels longer than this many characters are cut in the `tokens list` table, with an ellipsis. */
const TABLE_LABEL_CHARS = 40;

/** `label` cut to TABLE_LABEL_CHARS characters (grapheme clusters: no flag, emoji sequence or accent is split), with … when cut. */
export function clipLabel(label: string): string {
  const chars = [...new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(label)].map((part) => part.segment);
  return chars.length <= TABLE_LABEL_CHARS ? label : `${chars.slice(0, TABLE_LABEL_CHARS - 1).join('')}…`;
}
