import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/cli.ts';

const run = promisify(execFile);
const WATCHDOG = fileURLToPath(new URL('./process-watchdog.mjs', import.meta.url));

/**
 * Test files (path under test/ → source) run as one process the way npm test runs a group: the
 * group file writeGroupFiles writes, with the watchdog, under node --test with `limitMs`.
 */
async function runGroup(t: Parameters<typeof tempDir>[0], sources: Record<string, string>, limitMs: number, env: Record<string, string> = {}) {
  const tree = await tempDir(t);
  await mkdir(join(tree, 'test', 'runner'), { recursive: true });
  // The watchdog and what it imports.
  for (const name of ['process-watchdog.mjs', 'cpu-log.mjs']) {
    await writeFile(join(tree, 'test', 'runner', name), await readFile(join(dirname(WATCHDOG), name), 'utf8'));
  }
  for (const [file, source] of Object.entries(sources)) {
    await mkdir(dirname(join(tree, file)), { recursive: true });
    await writeFile(join(tree, file.replace(/\.ts$/, '.js')), source);
  }
  // @ts-expect-error: a plain .mjs module of the runner, without types.
  const { writeGroupFiles } = (await import('./test-groups.mjs')) as { writeGroupFiles: (tree: string, grouped: { alone: string[]; groups: string[][] }) => Promise<string[]> };
  const [path] = await writeGroupFiles(tree, { alone: [], groups: [Object.keys(sources)] });
  const started = Date.now();
  const result = await run(process.execPath, ['--test', `--test-timeout=${limitMs}`, path!], {
    cwd: tree,
    // Without this test's own NODE_TEST_CONTEXT, which would make node --test report to this test runner.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_TEST_CONTEXT')), FLEETPRUNE_TEST_PROCESS_MS: String(limitMs), ...env },
    timeout: limitMs + 30_000,
  }).then(
    ({ stdout }) => ({ stdout, code: 0 }),
    (error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }),
  );
  return { ...result, seconds: (Date.now() - started) / 1000, tree };
}

test('a test process that hangs is ended before its time limit, naming the tests still running, and the run goes on', async (t) => {
  // Fires at limit - 30 s: one second in.
  const { stdout, code, seconds } = await runGroup(
    t,
    {
      'test/a/quick.test.ts': `import { test } from 'node:test';\ntest('a quick one', () => {});`,
      'test/a/leader.test.ts': `import { describe, test } from 'node:test';
     test('skips itself', (t) => { t.skip('no engine'); });
     describe('leader election', () => {
       test('waits on a lock', async (t) => {
         await t.test('that nobody releases', async () => { setInterval(() => {}, 1000); await new Promise(() => {}); });
       });
     });`,
    },
    31_000,
  );
  assert.equal(code, 1, stdout);
  assert.ok(seconds < 20, `ended by the watchdog after ${seconds} s, not by the runner's limit`);
  assert.match(stdout, /^ok 1 - a quick one$/m, 'what finished is reported');
  assert.match(stdout, /^# watchdog: this test process ran 1 s, close to its limit; ending it\.$/m);
  assert.match(stdout, /^# its test files: test\/a\/quick\.test\.ts, test\/a\/leader\.test\.ts$/m);
  assert.doesNotMatch(stdout, /still loading/);
  const named = stdout.split('\n').filter((line) => /^# {3}/.test(line));
  assert.deepEqual(
    named.map((line) => line.replace(/\d+ s/, 'N s')),
    ['#   waits on a lock (running for N s)', '#   that nobody releases (running for N s)'],
    'the hung test and its parent; not the tests that ended or skipped themselves before them',
  );
  assert.match(stdout, /^# what keeps the process alive: .*Timeout/m);
});

test("a test whose cleanup hangs is named as the last to end, not as 'no test running'", async (t) => {
  const { stdout, code } = await runGroup(
    t,
    { 'test/a/server.test.ts': `import { test } from 'node:test';\ntest('stops its server', (t) => { setInterval(() => {}, 1000); t.after(() => new Promise(() => {})); });` },
    31_000,
  );
  assert.equal(code, 1, stdout);
  assert.match(stdout, /^# no test is running; the last to end \(its cleanup, a suite's after hook, a later file or a handle it left may be what waits\):$/m);
  assert.match(stdout, /^# {3}stops its server \(its body ended \d+ s ago\)$/m);
});

test('a test file whose loading hangs is named as still loading', async (t) => {
  const { stdout, code } = await runGroup(
    t,
    {
      'test/a/first.test.ts': `import { test } from 'node:test';\ntest('first', () => {});`,
      'test/a/second.test.ts': `setInterval(() => {}, 1000);\nawait new Promise(() => {});`,
    },
    31_000,
  );
  assert.equal(code, 1, stdout);
  assert.match(stdout, /^# still loading test\/a\/second\.test\.ts \(its module code, or an import of it, waits\)$/m);
});

test('a test process that finishes in time is not touched by the watchdog', async (t) => {
  const { stdout, code } = await runGroup(t, { 'test/a/quick.test.ts': `import { test } from 'node:test';\ntest('quick', async () => { await new Promise((resolve) => setTimeout(resolve, 200)); });` }, 31_000);
  assert.equal(code, 0, stdout);
  assert.doesNotMatch(stdout, /watchdog/);
});

test('FLEETPRUNE_TEST_CPU_LOG: each test process logs the CPU it and its children used, per test, and cpu-report sums it up', async (t) => {
  // Until the process has used this much CPU (not wall time: on a loaded machine a process gets less than a core).
  const spin = (ms: number) => `const until = process.cpuUsage().user + ${ms * 1000}; let x = 0; while (process.cpuUsage().user < until) x++;`;
  const logFile = join(await tempDir(t), 'cpu.jsonl');
  const { stdout, code, tree } = await runGroup(
    t,
    {
      'test/a/own.test.ts': `import { test } from 'node:test';\ntest('spins itself', async (t) => { ${spin(400)} await t.test('a subtest, counted in its parent', () => {}); });`,
      'test/a/child.test.ts': `import { test } from 'node:test';\nimport { spawnSync } from 'node:child_process';\ntest('spins a child', () => { spawnSync(process.execPath, ['-e', ${JSON.stringify(spin(400))}]); });`,
    },
    60_000,
    { FLEETPRUNE_TEST_CPU_LOG: logFile },
  );
  assert.equal(code, 0, stdout);
  const lines = (await readFile(logFile, 'utf8')).trim().split('\n');
  assert.equal(lines.length, 1, 'one line for the one process');
  const logged = JSON.parse(lines[0]!) as { files: string[]; self: number; children: number; tests: { name: string; self: number; children: number }[] };
  assert.deepEqual(logged.files, ['test/a/own.test.ts', 'test/a/child.test.ts']);
  const [own, child] = logged.tests;
  assert.equal(own?.name, 'spins itself');
  assert.ok(own.self >= 0.3 && own.children === 0, JSON.stringify(own));
  assert.equal(child?.name, 'spins a child');
  assert.ok(child.children >= 0.3 && child.self < 0.3, JSON.stringify(child));
  assert.ok(logged.self >= own.self && logged.children >= child.children, JSON.stringify(logged));
  const report = await run(process.execPath, [fileURLToPath(new URL('./cpu-report.mjs', import.meta.url)), logFile], { cwd: tree });
  assert.match(report.stdout, /^1 processes: \d+ CPU-s of their own, \d+ of their children's$/m);
  assert.match(report.stdout, /^ +\d+\.\d +\d+\.\d +\d+\.\d {2}spins a child {2}\(.*test\/a\/.*\)$/m);
  assert.doesNotMatch(report.stdout, /a subtest/, 'a subtest is not counted again');
});
