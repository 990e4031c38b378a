import { Command, CommanderError } from 'commander';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

type Register = (program: Command) => void;

/**
 * Each command's module, loaded on demand: a run of `fleetprune prune` does not pay for loading
 * gRPC, MQTT or the server, and `fleetprune server` does not load the agent. Help and unknown
 * commands load them all.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  prune: async () => (await import('./prune-command.ts')).registerPruneCommand,
  demo: async () => (await import('./demo-command.ts')).registerDemoCommand,
  keys: async () => (await import('./keys-command.ts')).registerKeysCommand,
  verify: async () => (await import('./verify-command.ts')).registerVerifyCommand,
  server: async () => (await import('./server-command.ts')).registerServerCommand,
  models: async () => (await import('./models-command.ts')).registerModelsCommand,
  jobs: async () => (await import('./jobs-command.ts')).registerJobsCommand,
  tokens: async () => (await import('./tokens-command.ts')).registerTokensCommand,
  blobs: async () => (await import('./blobs-command.ts')).registerBlobsCommand,
  rollout: async () => (await import('./rollout-command.ts')).registerRolloutCommand,
  devices: async () => (await import('./devices-command.ts')).registerDevicesCommand,
  assign: async () => (await import('./assign-command.ts')).registerAssignCommand,
  agent: async () => (await import('../../agent/cli-command.ts')).registerAgentCommand,
};

export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('fleetprune')
    .description('Prune dense neural networks (ODF2NNA) and ship them to field devices with staged rollouts')
    .version('0.1.0')
    // Program options only before the command, so a command may have its own --version (fleetprune assign).
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const requested = argv[2];
  const names = requested !== undefined && requested in COMMANDS ? [requested] : Object.keys(COMMANDS);
  for (const name of names) (await COMMANDS[name]!())(program);
  return program;
}

/**
 * Runs the CLI and returns the process exit code. Bad input exits 2 with one line on stderr;
 * an unexpected failure exits 1, also with one line (the stack goes to the debug log only).
 */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
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
