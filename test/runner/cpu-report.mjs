// node test/runner/cpu-report.mjs FILE [N]: the N (default 25) test processes and tests that used
// the most CPU in a run with FLEETPRUNE_TEST_CPU_LOG=FILE (cpu-log.mjs), and the run's total.
import { readFileSync } from 'node:fs';

const [file, count = '25'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node test/runner/cpu-report.mjs FILE [N]');
  process.exit(2);
}
const top = Number(count);
const processes = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
const seconds = (value) => value.toFixed(1).padStart(7);
const sum = (items, pick) => items.reduce((total, item) => total + pick(item), 0);
console.log(`${processes.length} processes: ${sum(processes, (p) => p.self).toFixed(0)} CPU-s of their own, ${sum(processes, (p) => p.children).toFixed(0)} of their children's`);
console.log('\nprocesses (CPU-s own, children, wall s):');
for (const p of [...processes].sort((a, b) => b.self + b.children - (a.self + a.children)).slice(0, top)) {
  console.log(`${seconds(p.self)} ${seconds(p.children)} ${seconds(p.wall)}  ${p.files.join(' ')}`);
}
// A test's file: its own when node said (cpu-log.mjs), else its process's (one file, or a group's first…last).
const tests = processes.flatMap((p) => p.tests.map((t) => ({ ...t, file: t.file ?? (p.files.length === 1 ? p.files[0] : `${p.files[0]}…${p.files.at(-1)}`) })));
console.log('\ntests (CPU-s own, children, wall s; name, file):');
for (const t of [...tests].sort((a, b) => b.self + b.children - (a.self + a.children)).slice(0, top)) {
  console.log(`${seconds(t.self)} ${seconds(t.children)} ${seconds(t.wall)}  ${t.name}  (${t.file})`);
}
