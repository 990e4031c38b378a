// `npm test`: builds the compiled test tree (test-tree.mjs) and runs node's test runner on it.
//
//   npm test                                   every test/**/*.test.ts
//   npm test -- test/agent/agent.test.ts ...    only these files
//   npm test -- --test-name-pattern=rollback     flags are passed to node --test
//
// A single file also runs straight from its source: node --import tsx --test test/x.test.ts
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { buildTestTree, SOURCE_ROOT } from './test-tree.mjs';

async function testFiles(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await testFiles(path)));
    else if (entry.name.endsWith('.test.ts')) found.push(relative(SOURCE_ROOT, path));
  }
  return found;
}

const args = process.argv.slice(2);
const flags = args.filter((arg) => arg.startsWith('-'));
const named = args.filter((arg) => !arg.startsWith('-')).map((arg) => relative(SOURCE_ROOT, resolve(arg)));
const files = (named.length > 0 ? named : await testFiles(join(SOURCE_ROOT, 'test'))).sort();
const notTests = files.filter((file) => !file.endsWith('.test.ts'));
if (notTests.length > 0) {
  console.error(`npm test: not a test file (test/**/*.test.ts): ${notTests.join(', ')}`);
  process.exit(2);
}

const tree = await buildTestTree();
const child = spawn(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-concurrency=3', ...flags, ...files.map((file) => file.replace(/\.ts$/, '.js'))],
  { cwd: tree, stdio: 'inherit' },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('close', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
