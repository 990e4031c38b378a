import { Command } from 'commander';
import { oneLineUsageErrors, runCli } from '../../shared/cli/run-cli.ts';
import { FLEETPRUNE_VERSION } from '../../shared/cli/version.ts';
import { ALL_MIGRATIONS } from '../store/migrations/index.ts';
import { schemaLevel } from '../store/migrations/run-migrations.ts';

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
  audit: async () => (await import('./audit-command.ts')).registerAuditCommand,
  blobs: async () => (await import('./blobs-command.ts')).registerBlobsCommand,
  rollout: async () => (await import('./rollout-command.ts')).registerRolloutCommand,
  devices: async () => (await import('./devices-command.ts')).registerDevicesCommand,
  assign: async () => (await import('./assign-command.ts')).registerAssignCommand,
  agent: async () => (await import('../../agent/cli-command.ts')).registerAgentCommand,
};

export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('fleetprune')
    .description('Prune dense neural networks (ODF2NNA) and ship them to field devices with staged rollouts')
    // With the database schema it migrates to: all builds say 0.1.0, and a database a newer
    // build migrated names the migrations it needs (run-migrations.ts).
    .version(`${FLEETPRUNE_VERSION} (database migrations: ${schemaLevel(ALL_MIGRATIONS)})`)
    // Program options only before the command, so a command may have its own --version (fleetprune assign).
    .enablePositionalOptions()
    .exitOverride();
  oneLineUsageErrors(program);
  const requested = argv[2];
  // Own keys only: `in` also takes the object's inherited members (constructor, toString) for commands.
  const names = requested !== undefined && Object.hasOwn(COMMANDS, requested) ? [requested] : Object.keys(COMMANDS);
  for (const name of names) (await COMMANDS[name]!())(program);
  return program;
}

/** Runs the CLI and returns the process exit code (see runCli). */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  // `fleetprune help rollout start`: commander's help command reads one word, and showed the
  // group's help. Only for a group's own command, and nothing after it; the rest is left to commander.
  const group = argv[2] === 'help' && argv.length === 5 ? program.commands.find((command) => command.name() === argv[3]) : undefined;
  if (group?.commands.some((command) => command.name() === argv[4] || command.aliases().includes(argv[4]!))) {
    return runCli(program, [...argv.slice(0, 2), argv[3]!, argv[4]!, '--help']);
  }
  // A word the group has no command for (`help rollout strat`): refused as `rollout strat` is
  // (unknown command, did you mean start?, exit 2), not answered with the group's help and exit 0.
  if (group && group.commands.length > 0 && !argv[4]!.startsWith('-')) return runCli(program, [...argv.slice(0, 2), argv[3]!, argv[4]!]);
  return runCli(program, argv);
}
