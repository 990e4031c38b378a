import type { Command } from 'commander';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';

export function registerTokensCommand(program: Command): void {
  const tokens = program.command('tokens').description('bearer tokens (admin only, over gRPC)');
  withConnectionOptions(tokens.command('create').description('create a token and print it (shown only this once)'))
    .requiredOption('--role <role>', 'device, viewer, operator or admin')
    .option('--label <text>', 'what the token is for')
    .action(async (flags: ConnectionFlags & { role: string; label?: string }) => {
      await withConnection(flags, async (connection) => {
        const created = await connection.unary<{ token: string; record: { id: string; role: string } }>('Tokens', 'CreateToken', {
          role: flags.role,
          label: flags.label ?? '',
        });
        process.stdout.write(`${created.token}\n`);
        process.stderr.write(`created ${created.record.role} token ${created.record.id}; store it now, it is not shown again\n`);
      });
    });
}
