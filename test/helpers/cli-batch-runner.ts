/**
 * Runs many `fleetprune` command lines in this one process, one after the other, and writes each
 * one's exit code, stdout and stderr as JSON to the file named by argv[2] (cases from argv[3], a
 * JSON file of {args, env}). For tables of bad input: each case goes through the CLI's own main()
 * as `bin/fleetprune.js` runs it, without paying a process start (about 1 CPU-second) per case.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { main } from '../../server/cli/main.ts';

interface BatchCase {
  args: string[];
  env?: Record<string, string>;
}

const [, , resultsPath, casesPath] = process.argv;
const cases = JSON.parse(readFileSync(casesPath!, 'utf8')) as BatchCase[];
// Each run adds its own listeners for uncaught failures and closed output.
process.setMaxListeners(0);
process.stdout.setMaxListeners(0);
process.stderr.setMaxListeners(0);

type Write = typeof process.stdout.write;
const results: { code: number; stdout: string; stderr: string }[] = [];
for (const { args, env = {} } of cases) {
  const savedEnv = { ...process.env };
  Object.assign(process.env, { FLEETPRUNE_LOG_LEVEL: 'silent' }, env);
  const captured = { stdout: '', stderr: '' };
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      captured[name] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      const done = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
      done?.();
      return true;
    }) as Write;
  }
  let code: number;
  try {
    code = await main(['node', 'bin/fleetprune.js', ...args]);
  } finally {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
    process.exitCode = 0;
  }
  results.push({ code, ...captured });
}
writeFileSync(resultsPath!, JSON.stringify(results));
// A command may leave a handle open (a closed gRPC channel's timer): the batch is over.
process.exit(0);
