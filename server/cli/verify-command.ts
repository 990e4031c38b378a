import type { Command } from 'commander';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { GENERAL_SUBDIR } from '../../shared/artifact/prune-output-names.ts';
import { verifyPruneOutput } from '../../shared/artifact/verify-artifact.ts';
import { assertArtifactDirectory } from '../../shared/artifact/read-artifact.ts';
import { UserError, underFlag } from '../../shared/util/errors.ts';
import { printable } from '../../shared/util/printable.ts';

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('check an artifact\'s file hashes and signature, and that its model files hold the layers its manifest lists; its parent\'s too in DIR/general when prune wrote one there; exits 1 if any check fails (files the manifest does not list, such as report.json, are not checked: nothing loads them)')
    .argument('<dir>', 'artifact directory (the one holding manifest.json)')
    .requiredOption('--public-key <file>', 'ed25519 public key (signing.pub)')
    .action(async (dir: string, flags: { publicKey: string }) => {
      // An empty path (`"$KEY"` with KEY unset) is named as such, not as a file called "".
      if (dir === '') throw new UserError("the artifact directory's path is empty");
      if (flags.publicKey === '') throw new UserError('--public-key: the path is empty');
      await assertArtifactDirectory(dir);
      const publicKey = await underFlag('--public-key', () => loadPublicKey(flags.publicKey));
      const result = await verifyPruneOutput(dir, publicKey);
      if (result.ok) {
        process.stdout.write(`ok ${result.manifest!.name} ${artifactId(result.manifest!)}\n`);
        const parent = result.parent?.manifest;
        if (parent) process.stdout.write(`ok ${parent.name} ${artifactId(parent)} (${GENERAL_SUBDIR}/, its parent)\n`);
        return;
      }
      // Each failure is escaped where it quotes the artifact (read-artifact, verify-artifact); once
      // more here, as the last step before the terminal: one failure, one line, whatever a future
      // check quotes. printable leaves text it has escaped as it is, so nothing is escaped twice.
      for (const failure of result.failures) process.stderr.write(`fleetprune: verify failed: ${printable(failure)}\n`);
      throw new UserError(`verify failed: ${dir}: ${result.failures.length} check(s) failed`, { exitCode: 1 });
    });
}

