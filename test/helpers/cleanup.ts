import type { TestContext } from 'node:test';

/**
 * Test cleanups that run last-in first-out, as deferred calls do, so what was set up last is torn
 * down first: a server stops before its data directory is removed and its PostgreSQL schema
 * dropped, a demo before the browser that watched it.
 *
 * node:test runs `t.after` hooks in the order they were added, and once one throws it skips the
 * rest. A data directory removed while its server still wrote into it (rm fails with ENOTEMPTY)
 * therefore skipped the server's close, and the test process never ended: the suite hung after
 * the failure instead of reporting it. Here every cleanup runs even when one before it failed; a
 * failure is written to stderr, not thrown, so hooks added after these run too.
 */
const stacks = new WeakMap<TestContext, (() => unknown)[]>();

export function deferCleanup(t: TestContext, cleanup: () => unknown): void {
  let stack = stacks.get(t);
  if (!stack) {
    const steps: (() => unknown)[] = [];
    stacks.set(t, (stack = steps));
    t.after(async () => {
      for (const step of steps.reverse()) {
        try {
          await step();
        } catch (error) {
          process.stderr.write(`# cleanup of "${t.name}" failed: ${error instanceof Error ? error.message : String(error)}\n`);
        }
      }
    });
  }
  stack.push(cleanup);
}
