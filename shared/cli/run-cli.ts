import { CommanderError, Help, type Command, type Option } from 'commander';
import { UserError, errorMessage } from '../util/errors.ts';
import { cliLogLevel } from '../util/log.ts';
import { printable } from '../util/printable.ts';

/**
 * Parses argv with a commander program built with `.exitOverride()`, runs the chosen action and
 * returns the process exit code. Bad input exits 2 with one line on stderr; an unexpected failure
 * exits 1, also with one line (the stack only with FLEETPRUNE_DEBUG set).
 */
export async function runCli(program: Command, argv: readonly string[], name = program.name()): Promise<number> {
  exitOnUncaughtFailures(name);
  exitWhenOutputFails(name);
  try {
    // A bad FLEETPRUNE_LOG_LEVEL is an error for every command, not only for those that log.
    cliLogLevel();
    refuseUnexpandedHome(argv);
    await program.parseAsync(withoutHelpForUnknownCommand(program, argv));
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (usage errors, --help, --version).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof UserError) {
      process.stderr.write(`${name}: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`${name}: internal error: ${errorMessage(error)}\n`);
    if (process.env.FLEETPRUNE_DEBUG) process.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
    return 1;
  }
}

/** The options whose values are paths (a ~ in free text, `--reason "~/ops"`, is no home directory). */
const PATH_OPTIONS = new Set(['--out', '--data', '--data-dir', '--data-root', '--config', '--holdout', '--sign-key', '--public-key', '--trusted-key', '--tls-ca', '--tls-cert', '--tls-key', '--mosquitto-dir', '--mosquitto-pid-file', '--summary-json', '--server-path']);

/**
 * A path starting with `~/` reached the CLI unexpanded (`--out=~/keys`, or quoted): the shell
 * expands `~` only at the start of a word. Taken as written, it made a directory named `~` in the
 * working directory (where a later `rm -rf ~` meant to remove it would take the home instead), so
 * it is refused, saying what to write. Checked: the values of PATH_OPTIONS, and arguments that
 * follow no option (the artifact directory of `verify`, `models push`).
 */
export function refuseUnexpandedHome(argv: readonly string[]): void {
  const args = argv.slice(2);
  args.forEach((arg, i) => {
    const inline = /^(--[A-Za-z0-9-]+)=(.*)$/s.exec(arg);
    const previous = i > 0 ? args[i - 1]! : '';
    const [where, value] = inline
      ? [PATH_OPTIONS.has(inline[1]!) ? inline[1]! : null, inline[2]!]
      : [PATH_OPTIONS.has(previous) ? previous : previous.startsWith('-') ? null : 'argument', arg];
    if (where === null || !/^~(\/|$)/.test(value)) return;
    const home = `$HOME${value.slice(1)}`;
    throw new UserError(`${where}: ${JSON.stringify(value)} starts with ~, which the shell did not expand (it does so only at the start of a word): write ${home}${inline ? `, or ${where} ~${value.slice(1)} with a space` : ''}`, { exitCode: 2 });
  });
}

/**
 * `fleetprune rollout create --help` names a command that does not exist: commander would print
 * the group's help and exit 0, as if the command had worked. Without the help flag, commander
 * reports the unknown command (with its "Did you mean" suggestion) and the CLI exits 2.
 */
export function withoutHelpForUnknownCommand(program: Command, argv: readonly string[]): string[] {
  let command = program;
  for (let i = 2; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') break;
    if (token.startsWith('-')) continue;
    if (command.commands.length === 0) break;
    // `fleetprune help nope` (or `rollout help nope`): commander printed the whole help and exited 2
    // without naming nope; as `fleetprune nope` it is "unknown command 'nope'".
    // Only the words that name commands are looked at: those after a command without subcommands
    // are its arguments (`help devices revoke d1` is help, never a revoke), and the line is left to
    // commander's help then.
    if (token === 'help') {
      let under = command;
      const path: string[] = [];
      for (const name of argv.slice(i + 1)) {
        if (name === '--' || name.startsWith('-')) break;
        if (under.commands.length === 0) break;
        const sub = under.commands.find((c) => c.name() === name || c.aliases().includes(name));
        // Unknown under a group: said as `fleetprune GROUP nope` says it (nothing after it is run: it is an error).
        if (sub === undefined) return [...argv.slice(0, i), ...path, name];
        path.push(name);
        under = sub;
      }
      break;
    }
    const sub = command.commands.find((c) => c.name() === token || c.aliases().includes(token));
    if (sub === undefined) return argv.filter((arg) => arg !== '-h' && arg !== '--help');
    command = sub;
  }
  return [...argv];
}

/**
 * Commander's usage errors (a bad option value, an unknown option, a missing argument) as the
 * CLI's other errors are: one line, `name: message (run with --help for usage)`; and help that
 * marks the options a command cannot run without "(required)", as commander's does not.
 * Subcommands created after this call inherit both.
 */
export function oneLineUsageErrors(program: Command): Command {
  return program
    .configureOutput({
      outputError: (message, write) => {
        // One line, and an argument's control characters (ESC, a bell) and text-direction controls
        // (U+202E, which reverses the rest of the line) escaped rather than sent to the terminal or CI log.
        const text = printable(message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim());
        write(`${program.name()}: ${text} (run with --help for usage)\n`);
      },
    })
    .configureHelp({
      optionDescription(this: Help, option: Option): string {
        const description = Help.prototype.optionDescription.call(this, option);
        return option.mandatory ? `${description} (required)` : description;
      },
    });
}

/** The exit code of a command whose reader went away: 128 + SIGPIPE, as a shell reports `git log | head -1`'s git. */
export const CLOSED_OUTPUT_EXIT_CODE = 141;

/**
 * A reader that goes away (`fleetprune rollout status ID | head -1`) is not an internal error: the
 * next write to its pipe fails with EPIPE, and the command exits at once, without a word, as a C
 * tool killed by SIGPIPE would (a shell without pipefail ignores the code; a supervisor restarts a
 * server whose log pipe broke). Output that cannot be written for another reason (`> out.json` on
 * a full disk: ENOSPC) is no internal error either: one line on stderr says so, and exit code 1.
 * A service that runs (goOnWhenOutputFails) goes on instead: its stdout holds only its ready
 * line (its log is on stderr), and exiting would skip its orderly stop (jobs failed with their
 * reason, the leadership given up, devices told).
 */
function exitWhenOutputFails(name: string): void {
  let failed = false;
  for (const [label, stream] of [['stdout', process.stdout], ['stderr', process.stderr]] as const) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      // What was lost with it, when the command said so (the secrets of an enrollment): said even
      // for a reader that went away, since nothing else will ever show them.
      const note = label === 'stdout' ? lostWithStdout : undefined;
      if (error.code === 'EPIPE') {
        if (note === undefined) process.exit(CLOSED_OUTPUT_EXIT_CODE);
        lostWithStdout = undefined;
        process.stderr.write(`${name}: the reader of stdout went away: ${note}\n`, () => process.exit(CLOSED_OUTPUT_EXIT_CODE));
        return;
      }
      if (failed) return; // each later write fails the same way
      failed = true;
      // On stderr, unless stderr is what failed (then there is nowhere to say it).
      const said = (done: () => void) =>
        label === 'stdout'
          ? process.stderr.write(
              `${name}: cannot write the output to stdout (${errorMessage(error)}); ${note ?? (longRunning ? 'going on without it' : 'what the command did before that stands')}\n`,
              done,
            )
          : done();
      said(() => {
        if (!longRunning) process.exit(1);
      });
    });
  }
}

let longRunning = false;
let lostWithStdout: string | undefined;

/**
 * Writes `text` to stdout and resolves once it is written; if stdout fails meanwhile (a reader gone,
 * a full disk), `lost` is said on stderr (what the user has lost with it, and what to do) and the
 * command exits as for any output that fails (141 or 1).
 */
export function writeStdoutOrSay(text: string, lost: string): Promise<void> {
  lostWithStdout = lost;
  return new Promise((resolve) =>
    process.stdout.write(text, (error) => {
      if (error) return; // the 'error' listener says it and exits
      lostWithStdout = undefined;
      resolve();
    }),
  );
}

/**
 * Called by a service (server, agent) once it starts running: from then on, output that cannot
 * be written is said once and the service goes on (exitWhenOutputFails). Its --help, --version or
 * a refused start still exit 1 on it.
 */
export function goOnWhenOutputFails(): void {
  longRunning = true;
}

/**
 * The last resort of a long-running command (server, agent): a failure no code path caught (a
 * bug, or an 'error' event nobody listened to) is one line on stderr and exit code 1, so the
 * supervisor (systemd, compose) restarts the process; the stack only with FLEETPRUNE_DEBUG set.
 */
function exitOnUncaughtFailures(name: string): void {
  const fail = (kind: string) => (error: unknown) => {
    process.stderr.write(`${name}: internal error (${kind}): ${errorMessage(error)}\n`);
    if (process.env.FLEETPRUNE_DEBUG) process.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', fail('uncaught exception'));
  process.on('unhandledRejection', fail('unhandled rejection'));
}
