// `npm test`: builds the compiled test tree (test-tree.mjs) and runs node's test runner on it.
//
//   npm test                                        every test/**/*.test.ts
//   npm test -- test/agent/agent.test.ts ...         only these files
//   npm test -- --test-name-pattern=rollback         flags are passed to node --test
//   npm test -- --test-timeout=1200000 FILE          each process's limit (PROCESS_LIMIT_MS), in ms
//
// A single file also runs straight from its source: node --import tsx --test test/x.test.ts
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { bundleTestFiles } from './test-bundle.mjs';
import { groupTestFiles, writeGroupFiles } from './test-groups.mjs';
import { buildTestTree, removeTestTree, SOURCE_ROOT } from './test-tree.mjs';

/**
 * Test processes (groups of files, see test-groups.mjs) run at once. Most tests wait on servers,
 * brokers, timers and child processes rather than compute: on 2 cores, with the test processes
 * bundled, eight at a time took 426 s and 464 s where six took 496 s and 536 s (same machine, same
 * code, runs in turn: 14% less; the suite's CPU, about 600 s, did not change, so six left a core
 * idle for a fifth of the run). Before the bundling, six took 555 s where four took 599 s.
 */
const CONCURRENCY = 8;

/**
 * How long one test process may run before it is ended and failed. The longest take about two
 * minutes on the slowest machine seen here; a process that hangs (a wait with no end) otherwise
 * holds the whole run until CI's own limit, with nothing printed to say which test it was.
 * process-watchdog.mjs names the tests still running shortly before this.
 */
const PROCESS_LIMIT_MS = 600_000;

async function testFiles(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await testFiles(path)));
    else if (entry.name.endsWith('.test.ts')) found.push(relative(SOURCE_ROOT, path));
  }
  return found;
}

const args = process.argv.slice(2);
const flags = args.filter((arg) => arg.startsWith('-'));
// A file named twice runs once, as node --test runs it.
const named = [...new Set(args.filter((arg) => !arg.startsWith('-')).map((arg) => relative(SOURCE_ROOT, resolve(arg))))];
const notTests = named.filter((file) => !file.endsWith('.test.ts') || file.startsWith('..'));
if (notTests.length > 0) {
  console.error(`npm test: not a test file (test/**/*.test.ts): ${notTests.join(', ')}`);
  process.exit(2);
}
const missing = named.filter((file) => !existsSync(join(SOURCE_ROOT, file)));
if (missing.length > 0) {
  console.error(`npm test: no such test file: ${missing.join(', ')}`);
  process.exit(2);
}
const files = named.length > 0 ? named : await testFiles(join(SOURCE_ROOT, 'test'));

// A limit given on the command line (npm test -- --test-timeout=MS) replaces PROCESS_LIMIT_MS.
const givenLimit = flags.findLast((flag) => flag.startsWith('--test-timeout='));
const limitMs = givenLimit === undefined ? PROCESS_LIMIT_MS : Number(givenLimit.slice('--test-timeout='.length));

/** FLEETPRUNE_TEST_BUNDLE=0: tests and the fleetprune command run from the tree's files, unbundled (to compare, or to rule a bundle out). */
const BUNDLED = process.env.FLEETPRUNE_TEST_BUNDLE !== '0';
const tree = await buildTestTree({ bundleCli: BUNDLED });
// The whole suite runs in groups of files per process (test-groups.mjs); files named run one each.
// Either way each process loads the watchdog first, then its files, bundled (test-bundle.mjs).
const paths = await writeGroupFiles(tree, named.length > 0 ? { alone: files, groups: [] } : await groupTestFiles(SOURCE_ROOT, files), BUNDLED ? await bundleTestFiles(tree, files) : undefined);
const child = spawn(
  process.execPath,
  ['--enable-source-maps', '--test', `--test-concurrency=${CONCURRENCY}`, ...(givenLimit === undefined ? [`--test-timeout=${limitMs}`] : []), ...flags, ...paths],
  { cwd: tree, stdio: 'inherit', env: { ...process.env, FLEETPRUNE_TEST_PROCESS_MS: String(limitMs) } },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('close', async (code, signal) => {
  await removeTestTree(tree);
  process.exit(code ?? (signal ? 1 : 0));
});
