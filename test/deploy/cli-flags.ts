import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const cache = new Map<string, Promise<Set<string>>>();

/** The long flags `node bin/fleetprune.js <subcommand> --help` lists (the real CLI, not a copy); `subcommand` may be two words (`blobs gc`). */
export function cliFlags(subcommand: string): Promise<Set<string>> {
  let flags = cache.get(subcommand);
  if (!flags) {
    flags = run(process.execPath, ['bin/fleetprune.js', ...subcommand.split(' '), '--help'], { cwd: REPO, timeout: 30_000 }).then(({ stdout }) => new Set(stdout.match(/--[a-z][a-z0-9-]*/g) ?? []));
    cache.set(subcommand, flags);
  }
  return flags;
}

/** Splits a command line on whitespace (no quoting is used in the deploy files). */
export function splitExecStart(command: string): string[] {
  return command.trim().split(/\s+/);
}
