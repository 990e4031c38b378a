/** The IPC message test/helpers/warm-cli.ts sends its runner (test/helpers/warm-cli-runner.ts). */
export interface WarmCliCase {
  id: number;
  args: string[];
  /** The whole environment the command runs with (not added to the runner's own). */
  env: Record<string, string>;
}

/** Starts the line that ends a case's output on stdout and on stderr: no command prints a NUL. */
export const WARM_CLI_MARK = '\u0000fleetprune-warm-cli-case-end ';
