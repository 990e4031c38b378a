import type { Command } from 'commander';
import { generateSigningKeys } from '../../shared/artifact/signing-keys.ts';
import { UserError } from '../../shared/util/errors.ts';
import { ensureWritableDirectory } from '../../shared/util/fs-checks.ts';

export function registerKeysCommand(program: Command): void {
  const keys = program.command('keys').description('manage the ed25519 keys that sign model artifacts');
  keys
    .command('generate')
    .description('write a new signing key pair: signing.key (private, mode 0600) and signing.pub')
    .requiredOption('--out <dir>', 'directory for the key files (created if missing)')
    .option('--force', 'replace existing key files')
    .action(async (flags: { out: string; force?: boolean }) => {
      // An empty path (`--out "$DIR"` with DIR unset) is named as such, not as a directory called "".
      if (flags.out === '') throw new UserError('--out: the path is empty');
      // Checked (and created) first: a bare mkdir({recursive}) spins forever under /proc or /sys.
      await ensureWritableDirectory(flags.out, '--out');
      const { privateKeyPath, publicKeyPath, keyId } = await generateSigningKeys(flags.out, { force: flags.force });
      process.stdout.write(`private key: ${privateKeyPath}\npublic key:  ${publicKeyPath}\nkey id:      ${keyId}\n`);
    });
}
