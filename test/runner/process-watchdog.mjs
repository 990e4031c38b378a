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
    const lines = running.length > 0
      ? ['tests still running:', ...running.map((entry) => `  ${entry.name} (running for ${seconds(entry.startedAt)} s)`)]
      : entries.length > 0
        ? ['no test is running; the last one to end:', ...entries.map((entry) => `  ${entry.name} (its body ended ${seconds(entry.endedAt)} s ago: its cleanup, or what comes after it, waits)`)]
        : ['no test has started (module loading holds the process).'];
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
