import type { Command } from 'commander';
import { parseChoice } from '../../shared/cli/option-parsers.ts';
import { ROLES } from '../auth/roles.ts';
import { formatTable } from './format-table.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { tokenJson, type GrpcToken } from './json-views.ts';
import { refuseEmpty } from './non-empty.ts';

export function registerTokensCommand(program: Command): void {
  const tokens = program.command('tokens').description('bearer tokens (admin only, over gRPC)');
  withConnectionOptions(tokens.command('create').description('create a token and print it (shown only this once)'))
    .requiredOption('--role <role>', 'device, viewer, operator or admin', parseChoice(ROLES))
    .option('--label <text>', 'what the token is for')
    .action(async (flags: ConnectionFlags & { role: string; label?: string }) => {
      refuseEmpty(flags.label, '--label', 'the default label, "ROLE token"');
      await withConnection(flags, async (connection) => {
        const created = await connection.unary<{ token: string; record: { id: string; role: string } }>('Tokens', 'CreateToken', {
          role: flags.role,
          label: flags.label ?? '',
        });
        process.stdout.write(`${created.token}\n`);
        process.stderr.write(`created ${created.record.role} token ${created.record.id}; store it now, it is not shown again\n`);
      });
    });
  withConnectionOptions(tokens.command('list').description('list tokens: id, role, label, created, revoked (never secrets)'))
    .option('--json', 'print JSON (the tokens of GET /api/tokens)')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const { tokens: list } = await connection.unary<{ tokens: GrpcToken[] }>('Tokens', 'ListTokens', {});
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(list.map(tokenJson), null, 2)}\n`);
          return;
        }
        const rows = list.map((t) => [t.id, t.role, t.label, t.created_at, t.created_by, t.revoked_at || '-']);
        process.stdout.write(formatTable([['ID', 'ROLE', 'LABEL', 'CREATED', 'BY', 'REVOKED'], ...rows]));
      });
    });
  withConnectionOptions(tokens.command('revoke').description('revoke a token: it stops working at once').argument('<id>', 'token id (from `tokens list`)'))
    .action(async (id: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        await connection.unary('Tokens', 'RevokeToken', { id });
        process.stderr.write(`revoked token ${id}\n`);
      });
    });
}
