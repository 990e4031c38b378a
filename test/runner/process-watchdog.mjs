// Imported first by every process `npm test` starts (test-groups.mjs): names what a test process
// was doing when it ran too long, then ends it.
//
// The runner gives each process a time limit (node --test-timeout, run.mjs). node 20 then fails the
// whole file as "test timed out" and says nothing of which test hung: a CI run that stalled on one
// test for an hour printed only the last test before it. Shortly before that limit, this prints
// the tests still running in the process, and how long each has run, with the handles keeping it
// alive, and ends the process, so the run goes on and its output names the culprit.
import { afterEach, beforeEach } from 'node:test';

const limitMs = Number(process.env.FLEETPRUNE_TEST_PROCESS_MS);
/** How long before the runner's own limit this speaks: enough to print and exit under load. */
const MARGIN_MS = 30_000;

if (Number.isFinite(limitMs) && limitMs > MARGIN_MS) {
  /** Each running test (suites included), by its context, with when it started. */
  const running = new Map();
  const path = (t) => [...(running.get(t)?.parents ?? []), t.name].join(' > ');
  beforeEach((t) => {
    // Nested tests run inside their parent's time: a parent still in `running` is its ancestor.
    running.set(t, { startedAt: Date.now(), parents: [...running.keys()].filter((other) => other !== t).map((other) => other.name) });
  });
  afterEach((t) => {
    running.delete(t);
  });
  const timer = setTimeout(() => {
    const now = Date.now();
    const lines = [...running.entries()].map(([t, { startedAt }]) => `  ${path(t)} (running for ${Math.round((now - startedAt) / 1000)} s)`);
    process.stderr.write(
      [
        `watchdog: this test process ran ${Math.round(limitMs / 1000) - MARGIN_MS / 1000} s, close to its limit; ending it.`,
        lines.length > 0 ? 'tests still running:' : 'no test is running (hooks or module loading hold the process).',
        ...lines,
        `what keeps the process alive: ${process.getActiveResourcesInfo().join(', ') || 'nothing'}`,
        '',
      ].join('\n'),
      () => process.exit(1),
    );
  }, limitMs - MARGIN_MS);
  timer.unref();
}
