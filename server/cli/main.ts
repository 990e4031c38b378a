import { Command, CommanderError } from 'commander';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { registerPruneCommand } from './prune-command.ts';
import { registerDemoCommand } from './demo-command.ts';
import { registerKeysCommand } from './keys-command.ts';
import { registerVerifyCommand } from './verify-command.ts';
import { registerServerCommand } from './server-command.ts';
import { registerModelsCommand } from './models-command.ts';
import { registerJobsCommand } from './jobs-command.ts';
import { registerTokensCommand } from './tokens-command.ts';

export function buildProgram(): Command {
  const program = new Command('fleetprune')
    .description('Prune dense neural networks (ODF2NNA) and ship them to field devices with staged rollouts')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerPruneCommand(program);
  registerDemoCommand(program);
  registerKeysCommand(program);
  registerVerifyCommand(program);
  registerServerCommand(program);
  registerModelsCommand(program);
  registerJobsCommand(program);
  registerTokensCommand(program);
  return program;
}

/**
 * Runs the CLI and returns the process exit code. Bad input exits 2 with one line on stderr;
 * an unexpected failure exits 1, also with one line (the stack goes to the debug log only).
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (usage errors, --help, --version).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof UserError) {
      process.stderr.write(`fleetprune: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`fleetprune: internal error: ${errorMessage(error)}\n`);
    if (process.env.FLEETPRUNE_DEBUG) process.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
    return 1;
  }
}
