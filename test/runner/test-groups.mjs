// Groups of test files that `npm test` runs in one process each, instead of one process per file.
//
// Every test process first spends about 0.3 CPU-seconds starting node and the test runner, and
// most then load the server or the agent (express, gRPC, the broker, prom-client: about one more
// CPU-second). Over two hundred files, that start-up was a fifth of the suite's CPU, and on two
// cores the suite is CPU-bound. A group file imports its files one after another; node's test
// runner queues the top-level tests of each in that order and runs them one at a time, as it does
// within a file, so a group runs its files' tests in sequence, each file's module state its own.
//
// What would behave differently in a shared process runs alone:
// - a file with top-level before()/after() hooks: in a group, every file's before() runs before the
//   group's first test and every after() after its last (but for an agent file's own world,
//   OWN_AGENT_WORLD);
// - a file that measures the process itself (memory, handles);
// - the files that take a minute or more, so no group holds two of them and ends the run late.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';

/**
 * Files per group. A server or agent group loads those modules once (about 0.9 CPU-s each time):
 * six files a group make about 30 fewer processes than four, and GROUP_SECONDS keeps them short.
 */
export const GROUP_SIZE = 6;
/**
 * And at most this many estimated seconds (estimatedSeconds): slow files are not stacked into one
 * long process that sets the end of the run (four server files made one of 107 s).
 */
const GROUP_SECONDS = 60;

/** Test files (relative to the repository root) that run alone for a reason other than hooks. */
const ALONE = new Set([
  'test/broker/embedded-packet-size.test.ts', // measures the process's memory
  'test/dashboard/demo-and-dashboard.test.ts', // minutes long
  'test/server/server-imports.test.ts', // checks which modules a process loaded
]);

const TOP_LEVEL_HOOK = /^(before|after|beforeEach|afterEach)\(/m;
/**
 * The one pair of top-level hooks a group may hold: an agent test file's own world (an embedded
 * broker, an artifact server and a temporary directory on ports and paths of its own), made before
 * its tests and closed after them. In a group every such world is made before the group's first
 * test and closed after its last, which changes nothing another file sees; 26 of these files each
 * ran alone, paying the agent's start-up (about 1 CPU-s) 26 times.
 */
const OWN_AGENT_WORLD = /^let world: AgentWorld;\nbefore\(async \(\) => \{\n  world = await createAgentWorld\(\);\n\}\);\nafter\(\(\) => world\.close\(\)\);$/m;

/** Whether `source` has top-level hooks other than OWN_AGENT_WORLD's. */
function hasSharedHooks(source) {
  return TOP_LEVEL_HOOK.test(source.replace(OWN_AGENT_WORLD, ''));
}

/**
 * Splits `files` (repository-relative .test.ts paths) into those run alone and groups of up to
 * GROUP_SIZE files of one folder, in the order given, each group at most GROUP_SECONDS long by
 * estimate (a file longer than that is a group of its own).
 */
export async function groupTestFiles(sourceRoot, files) {
  const alone = [];
  const byFolder = new Map();
  for (const file of files) {
    const source = await readFile(join(sourceRoot, file), 'utf8');
    if (ALONE.has(file) || hasSharedHooks(source)) alone.push(file);
    else byFolder.set(dirname(file), [...(byFolder.get(dirname(file)) ?? []), file]);
  }
  const groups = [];
  for (const folderFiles of byFolder.values()) {
    let group = [];
    for (const file of folderFiles) {
      if (group.length === GROUP_SIZE || (group.length > 0 && estimatedSeconds([...group, file]) > GROUP_SECONDS)) {
        groups.push(group);
        group = [];
      }
      group.push(file);
    }
    if (group.length > 0) groups.push(group);
  }
  return { alone, groups };
}

/**
 * About how many seconds the slowest test files take (the sum of their tests' durations in one
 * `npm test` on 2 cores, 2026-12-03, AMD EPYC); any other file counts DEFAULT_SECONDS. Only the
 * order they give matters: the longest processes start first, so the run does not end with one
 * long file started late while the other slots sit idle (longest-first, the classic rule for
 * scheduling on a few machines). A file that has become slow since only starts later than it
 * should: agent/benchmark-reruns.test.ts, missing here, started at 480 s of a 600 s run and ended it.
 */
const SECONDS = {
  'test/acceptance/rollouts.test.ts': 139,
  'test/agent/agent-crash.test.ts': 92,
  'test/dashboard/demo-and-dashboard.test.ts': 74,
  'test/server/job-lifecycle.test.ts': 58,
  'test/grafana/dashboard-data.test.ts': 58,
  'test/server/crash-safety.test.ts': 54,
  'test/server/jobs.test.ts': 52,
  'test/server/registry-rest.test.ts': 52,
  'test/fleet/fleet-e2e.test.ts': 51,
  'test/dashboard/stale-and-refused.test.ts': 51,
  'test/agent/benchmark-reruns.test.ts': 50,
  'test/agent/disk-takes-no-writes.test.ts': 49,
  'test/rollout-api/leader-stop.test.ts': 48,
  'test/server/cli.test.ts': 47,
  'test/pruning/odf2nna.test.ts': 46,
  'test/server/job-data-check.test.ts': 42,
  'test/rollout-api/rollout-cli-large.test.ts': 40,
  'test/rollout/hostile-specs.test.ts': 39,
  'test/pruning/prune-cli.test.ts': 36,
  'test/dashboard/navigation-and-layout.test.ts': 36,
  'test/agent/agent-bundle.test.ts': 35,
  'test/pruning/prune-out-mount-point.test.ts': 32,
  'test/rollout-api/rollout-process.test.ts': 31,
  'test/dashboard/scale-and-dates.test.ts': 31,
  'test/server/cli-input-refusals.test.ts': 31,
  'test/server/tls-metrics.test.ts': 31,
  'test/pruning/prune-csv-edges.test.ts': 28,
  'test/dashboard/list-caps.test.ts': 27,
  'test/server/cli-registry-output.test.ts': 26,
  'test/server/idle-connections.test.ts': 25,
  'test/server/demo-command.test.ts': 24,
  'test/fleet/standby-server.test.ts': 23,
  'test/agent/agent-flow.test.ts': 23,
  'test/server/job-end-unrecorded.test.ts': 21,
  'test/server/job-watch-cli.test.ts': 21,
  'test/agent/full-disk-start.test.ts': 21,
  'test/pruning/prune-out-guards.test.ts': 20,
  'test/deploy/prometheus-config.test.ts': 20,
  'test/server/data-dir-entries.test.ts': 19,
  'test/rollback-review/rollback-kill9.test.ts': 19,
  'test/agent/activation-retakes.test.ts': 19,
  'test/rollout-api/rollout-api.test.ts': 18,
  'test/server/list-paging-grpc.test.ts': 18,
  'test/server/jobs-cli-input.test.ts': 18,
  'test/rollback-review/agent-kill9-rollback.test.ts': 18,
  'test/server/cli-grpc-limits.test.ts': 17,
  'test/server/job-node-lock.test.ts': 17,
  'test/pruning/prune-degenerate-data.test.ts': 16,
  'test/server/store-races.test.ts': 16,
  'test/runner/warm-cli.test.ts': 16,
  'test/agent/command-retry-interrupts.test.ts': 15,
  'test/server/server-imports.test.ts': 15,
};
const DEFAULT_SECONDS = 4;

/** The estimated seconds of a process running `files` one after another (see SECONDS). */
export function estimatedSeconds(files) {
  return files.reduce((sum, file) => sum + (SECONDS[file] ?? DEFAULT_SECONDS), 0);
}

/**
 * Writes one file per process into `tree`'s test/.groups/ (a group's files imported one after
 * another, each from its bundled entry in `entries` (test-bundle.mjs) or else its compiled file;
 * a file run alone, imported by itself; either way after process-watchdog.mjs) and returns their paths for `node --test`
 * (relative to `tree`), the longest first by estimatedSeconds. node --test runs the files it is
 * given in the order of their names, whatever order they are given in, so the order is in the
 * names: `001-…` starts first. A failing test's `location` still names its own file.
 */
export async function writeGroupFiles(tree, { alone, groups }, entries = new Map()) {
  const dir = join(tree, 'test', '.groups');
  await mkdir(dir, { recursive: true });
  const processes = [...alone.map((file) => [file]), ...groups]
    .map((files) => ({ files, seconds: estimatedSeconds(files) }))
    .sort((a, b) => b.seconds - a.seconds);
  const paths = [];
  for (const [index, { files }] of processes.entries()) {
    const name = `${String(index + 1).padStart(3, '0')}-${basename(dirname(files[0]))}${files.length === 1 ? `-${basename(files[0], '.test.ts')}` : ''}.test.js`;
    const specifier = (path) => JSON.stringify(`./${relative(dir, path)}`);
    const lines = [
      `const { loadingFile } = await import(${specifier(join(tree, 'test', 'runner', 'process-watchdog.mjs'))});`,
      ...files.flatMap((file) => [`loadingFile(${JSON.stringify(file)});`, `await import(${specifier(entries.get(file) ?? join(tree, file.replace(/\.ts$/, '.js')))});`]),
      'loadingFile(undefined);',
    ];
    await writeFile(join(dir, name), `// npm test runs ${files.length === 1 ? 'this test file' : 'these test files'} in one process (test/runner/test-groups.mjs).\n${lines.join('\n')}\n`);
    paths.push(relative(tree, join(dir, name)));
  }
  return paths;
}
