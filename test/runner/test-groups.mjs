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
//   group's first test and every after() after its last;
// - a file that measures the process itself (memory, handles);
// - the files that take a minute or more, so no group holds two of them and ends the run late.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';

/** Files per group: four cut the suite's CPU by most of what grouping can, and keep groups short. */
const GROUP_SIZE = 4;

/** Test files (relative to the repository root) that run alone for a reason other than hooks. */
const ALONE = new Set([
  'test/broker/embedded-packet-size.test.ts', // measures the process's memory
  'test/dashboard/demo-and-dashboard.test.ts', // minutes long
  'test/server/server-imports.test.ts', // checks which modules a process loaded
]);

const TOP_LEVEL_HOOK = /^(before|after|beforeEach|afterEach)\(/m;

/**
 * Splits `files` (repository-relative .test.ts paths) into those run alone and groups of up to
 * GROUP_SIZE files of one folder, in the order given.
 */
export async function groupTestFiles(sourceRoot, files) {
  const alone = [];
  const byFolder = new Map();
  for (const file of files) {
    const source = await readFile(join(sourceRoot, file), 'utf8');
    if (ALONE.has(file) || TOP_LEVEL_HOOK.test(source)) alone.push(file);
    else byFolder.set(dirname(file), [...(byFolder.get(dirname(file)) ?? []), file]);
  }
  const groups = [];
  for (const folderFiles of byFolder.values()) {
    for (let i = 0; i < folderFiles.length; i += GROUP_SIZE) groups.push(folderFiles.slice(i, i + GROUP_SIZE));
  }
  return { alone, groups };
}

/**
 * Writes one group file per group into `tree`'s test/.groups/ and returns the paths to give
 * `node --test` (relative to `tree`): the files run alone, then the groups. A failing test's
 * `location` still names its own file.
 */
export async function writeGroupFiles(tree, { alone, groups }) {
  const dir = join(tree, 'test', '.groups');
  await mkdir(dir, { recursive: true });
  const paths = [];
  for (const [index, group] of groups.entries()) {
    if (group.length === 1) {
      paths.push(group[0].replace(/\.ts$/, '.js'));
      continue;
    }
    const name = `${String(index + 1).padStart(3, '0')}-${basename(dirname(group[0]))}.test.js`;
    const imports = group.map((file) => `await import(${JSON.stringify(`./${relative(dir, join(tree, file.replace(/\.ts$/, '.js')))}`)});`);
    await writeFile(join(dir, name), `// npm test runs these test files in one process (test/runner/test-groups.mjs).\n${imports.join('\n')}\n`);
    paths.push(relative(tree, join(dir, name)));
  }
  return [...alone.map((file) => file.replace(/\.ts$/, '.js')), ...paths];
}
