import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/cli.ts';

const run = promisify(execFile);
const WATCHDOG = fileURLToPath(new URL('./process-watchdog.mjs', import.meta.url));

/** A group file as npm test writes it (the watchdog first), run by node --test with `limitMs`; its output and exit code. */
async function runGroup(t: Parameters<typeof tempDir>[0], testSource: string, limitMs: number) {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'tests.mjs'), testSource);
  await writeFile(join(dir, 'process-watchdog.mjs'), await readFile(WATCHDOG, 'utf8'));
  await writeFile(join(dir, '001-group.test.mjs'), "await import('./process-watchdog.mjs');\nawait import('./tests.mjs');\n");
  const started = Date.now();
  const result = await run(process.execPath, ['--test', `--test-timeout=${limitMs}`, '001-group.test.mjs'], {
    cwd: dir,
    // Without this test's own NODE_TEST_CONTEXT, which would make node --test report to this test runner.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_TEST_CONTEXT')), FLEETPRUNE_TEST_PROCESS_MS: String(limitMs) },
    timeout: limitMs + 30_000,
  }).then(
    ({ stdout }) => ({ stdout, code: 0 }),
    (error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }),
  );
  return { ...result, seconds: (Date.now() - started) / 1000 };
}

test('a test process that hangs is ended before its time limit, naming the tests still running, and the run goes on', async (t) => {
  // Fires at limit - 30 s: one second in.
  const { stdout, code, seconds } = await runGroup(
    t,
    `import { describe, test } from 'node:test';
     test('a quick one', () => {});
     test('skips itself', (t) => { t.skip('no engine'); });
     describe('leader election', () => {
       test('waits on a lock', async (t) => {
         await t.test('that nobody releases', async () => { setInterval(() => {}, 1000); await new Promise(() => {}); });
       });
     });`,
    31_000,
  );
  assert.equal(code, 1, stdout);
  assert.ok(seconds < 20, `ended by the watchdog after ${seconds} s, not by the runner's limit`);
  assert.match(stdout, /^ok 1 - a quick one$/m, 'what finished is reported');
  assert.match(stdout, /^# watchdog: this test process ran 1 s, close to its limit; ending it\.$/m);
  const named = stdout.split('\n').filter((line) => /^# {3}/.test(line));
  assert.deepEqual(named.map((line) => line.replace(/\(running for \d+ s\)$/, '(running)')), ['#   waits on a lock (running)', '#   that nobody releases (running)'], 'the hung test and its parent, and no test that ended or skipped itself');
  assert.match(stdout, /^# what keeps the process alive: .*Timeout/m);
});

test("a test whose cleanup hangs is named as the last to end, not as 'no test running'", async (t) => {
  const { stdout, code } = await runGroup(
    t,
    `import { test } from 'node:test';
     test('stops its server', (t) => { setInterval(() => {}, 1000); t.after(() => new Promise(() => {})); });`,
    31_000,
  );
  assert.equal(code, 1, stdout);
  assert.match(stdout, /^# no test is running; the last one to end:$/m);
  assert.match(stdout, /^# {3}stops its server \(its body ended \d+ s ago: its cleanup, or what comes after it, waits\)$/m);
});

test('a test process that finishes in time is not touched by the watchdog', async (t) => {
  const { stdout, code } = await runGroup(t, `import { test } from 'node:test';\ntest('quick', async () => { await new Promise((resolve) => setTimeout(resolve, 200)); });`, 31_000);
  assert.equal(code, 0, stdout);
  assert.doesNotMatch(stdout, /watchdog/);
});
