// The server tests' name for the shared helper (test/helpers/cli.ts).
export { runCli, type CliResult } from '../../helpers/cli.ts';
