// FLEETPRUNE_TEST_CPU_LOG=FILE npm test: each test process appends one JSON line to FILE when it
// exits: its files, its wall time, and the CPU seconds it and the children it waited for (CLI
// processes, agents, servers, Chromium, Prometheus) used, in all and per test. Where the suite's
// CPU goes, as `npm test` on 2 cores is CPU-bound (test/runner/cpu-report.mjs sums it up).
import { appendFileSync, readFileSync } from 'node:fs';
import { afterEach, beforeEach } from 'node:test';

/** Clock ticks per second of /proc's times (USER_HZ, 100 on Linux). */
const TICKS = 100;

/** This process's CPU seconds so far: its own, and its waited-for children's. */
function cpu() {
  // Fields after the command name (which may hold spaces, in parentheses): utime is the 12th of
  // them, then stime, cutime, cstime.
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [utime, stime, cutime, cstime] = fields.slice(11, 15).map((field) => Number(field) / TICKS);
  return { self: utime + stime, children: cutime + cstime };
}

/** The test file a test's code is in, from the runner's context where node gives it (else undefined). */
function loadedFrom(t) {
  return typeof t.filePath === 'string' ? t.filePath : undefined;
}

export function logCpu(file, files) {
  const startedAt = Date.now();
  const tests = [];
  const started = new Map();
  beforeEach((t) => {
    // A subtest starts while its parent runs (a file's tests run one at a time): its CPU is its parent's already.
    if (started.size > 0) return;
    started.set(t, { at: Date.now(), cpu: cpu() });
  });
  afterEach((t) => {
    const start = started.get(t);
    if (!start) return;
    started.delete(t);
    const now = cpu();
    tests.push({ name: t.name, file: loadedFrom(t), wall: (Date.now() - start.at) / 1000, self: now.self - start.cpu.self, children: now.children - start.cpu.children });
  });
  process.on('exit', () => {
    const total = cpu();
    appendFileSync(file, `${JSON.stringify({ files: files(), wall: (Date.now() - startedAt) / 1000, ...total, tests })}\n`);
  });
}
