/**
 * The command line of a bench script: its own flags, parsed strictly. An unknown flag, a stray
 * argument or a bad value ends the script with one line naming it (exit code 2) before anything
 * is measured or BENCHMARKS.md is touched, rather than a stack trace, or a run that ignored the
 * flag and overwrote the section with what it measured instead.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

export function benchArgs<const O extends Options>(script: string, options: O, usage = ''): ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    const flags = Object.keys(options);
    const takes = flags.length === 0 ? 'it takes no flags or arguments' : `its flags: ${usage || flags.map((flag) => `--${flag}`).join(', ')}`;
    // node's own wording, without its hints about positional arguments (none is taken).
    const message = (error as Error).message.replace(/\. (To specify a positional argument|This command does not take positional arguments).*$/s, '').replace(/\.$/, '');
    return benchUsageError(script, `${message}; ${takes}`);
  }
}

/** Ends a bench script on a bad command line: one line, exit code 2. */
export function benchUsageError(script: string, message: string): never {
  process.stderr.write(`bench:${script}: ${message}\n`);
  process.exit(2);
}
