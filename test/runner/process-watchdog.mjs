// Imported first by every process `npm test` starts (test-groups.mjs): names what a test process
// was doing when it ran too long, then ends it.
//
// The runner gives each process a time limit (node --test-timeout, run.mjs). node 20 then fails the
// whole file as "test timed out" and says nothing of which test hung: a CI run that stalled on one
// test for an hour printed only the last test before it. Shortly before that limit, this prints
// the tests still running in the process (or, when none is, the last one and how long ago its body
// ended: its cleanup may be what waits), with the handles keeping it alive, and ends the process,
// so the run goes on and its output names the culprit.
import { afterEach, beforeEach } from 'node:test';
import { logCpu } from './cpu-log.mjs';

/** The test files this process runs (for the watchdog's lines), set by its group file. */
let files = [];
/** The file being imported, while the group file imports one. */
let loading;

/** Called by the group file (test-groups.mjs): `file` is being loaded; undefined once all are. */
export function loadingFile(file) {
  if (file !== undefined && !files.includes(file)) files = [...files, file];
  loading = file;
}

const limitMs = Number(process.env.FLEETPRUNE_TEST_PROCESS_MS);
/** How long before the runner's own limit this speaks: enough to print and exit under load. */
const MARGIN_MS = 30_000;

if (Number.isFinite(limitMs) && limitMs > MARGIN_MS) {
  /**
   * Tests (not suites) that started, by context: when, and when their body ended (undefined while
   * it runs). One whose body ended is forgotten when another test starts: by then its cleanup is
   * done, as a file's tests run one at a time.
   */
  const tests = new Map();
  const ended = (t) => {
    const entry = tests.get(t);
    if (entry && entry.endedAt === undefined) entry.endedAt = Date.now();
  };
  beforeEach((t) => {
    for (const [other, entry] of tests) if (entry.endedAt !== undefined) tests.delete(other);
    tests.set(t, { name: t.name, startedAt: Date.now(), endedAt: undefined });
    // Runs before the test's own cleanup, and also for a test that skipped itself (t.skip()),
    // which gets no afterEach.
    t.after(() => ended(t));
  });
  afterEach((t) => ended(t));

  const timer = setTimeout(() => {
    const now = Date.now();
    const seconds = (from) => Math.round((now - from) / 1000);
    const entries = [...tests.values()];
    const running = entries.filter((entry) => entry.endedAt === undefined);
    const ended = entries.filter((entry) => entry.endedAt !== undefined);
    const lines = [
      ...(files.length > 0 ? [`its test files: ${files.join(', ')}`] : []),
      ...(loading !== undefined ? [`still loading ${loading} (its module code, or an import of it, waits)`] : []),
      ...(running.length > 0 ? ['tests still running:', ...running.map((entry) => `  ${entry.name} (running for ${seconds(entry.startedAt)} s)`)] : []),
      ...(ended.length > 0
        ? [
            `${running.length > 0 ? 'and the last' : 'no test is running; the last'} to end (its cleanup, a suite's after hook, a later file or a handle it left may be what waits):`,
            ...ended.map((entry) => `  ${entry.name} (its body ended ${seconds(entry.endedAt)} s ago)`),
          ]
        : []),
      ...(entries.length === 0 && loading === undefined ? ['no test has started.'] : []),
    ];
    process.stderr.write(
      [
        `watchdog: this test process ran ${Math.round((limitMs - MARGIN_MS) / 1000)} s, close to its limit; ending it.`,
        ...lines,
        `what keeps the process alive: ${process.getActiveResourcesInfo().join(', ') || 'nothing'}`,
        '',
      ].join('\n'),
      () => process.exit(1),
    );
  }, limitMs - MARGIN_MS);
  timer.unref();
}

if (process.env.FLEETPRUNE_TEST_CPU_LOG) logCpu(process.env.FLEETPRUNE_TEST_CPU_LOG, () => files);
