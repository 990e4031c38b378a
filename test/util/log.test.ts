import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { nodeArgsFor, REPO_ROOT } from '../helpers/cli.ts';

async function logThroughFullStderr(whileFull: number, partial = false): Promise<{ refused: number; lines: { msg: string; i?: number }[] }> {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [...nodeArgsFor('test/util/helpers/log-through-full-stderr.ts'), String(whileFull), ...(partial ? ['partial'] : [])], {
    cwd: REPO_ROOT,
    env: { ...process.env, FLEETPRUNE_LOG_LEVEL: 'info' },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { refused: (JSON.parse(stdout) as { refused: number }).refused, lines: stderr.trimEnd().split('\n').map((line) => JSON.parse(line) as { msg: string; i?: number }) };
}

test('log lines stderr could not take (a full disk) are written, in order, once it takes them again', async () => {
  const { refused, lines } = await logThroughFullStderr(20);
  assert.ok(refused >= 20, `the writes were refused (${refused})`);
  assert.deepEqual(lines.map((line) => line.i ?? line.msg), [...Array.from({ length: 20 }, (_, i) => i), 'room again']);
});

test('while stderr stays full, the lines waiting are capped (about 1 MiB, the oldest dropped), and logging comes back afterwards', async () => {
  // 6,000 lines of about 300 bytes: 1.8 MB, more than is kept.
  const { lines } = await logThroughFullStderr(6000);
  assert.equal(lines.at(-1)?.msg, 'room again', 'the line logged once stderr took writes again');
  const kept = lines.filter((line) => line.msg === 'while full');
  assert.ok(kept.length > 1000 && kept.length < 6000, `${kept.length} of 6000 kept`);
  // The newest were kept, in order, with none missing among them.
  assert.deepEqual(kept.map((line) => line.i), Array.from({ length: kept.length }, (_, j) => 6000 - kept.length + j));
});

test('a line the full disk took in part is finished first, never dropped: every line of the log stays whole JSON', async () => {
  // More than is kept, so the oldest whole lines are dropped: not the one begun.
  const { lines } = await logThroughFullStderr(6000, true);
  assert.equal(lines[0]?.i, 0, 'the line written in part, finished');
  assert.ok(lines.length > 1000 && lines.length < 6001, `${lines.length} lines`);
  assert.equal(lines.at(-1)?.msg, 'room again');
  assert.deepEqual(lines.slice(1, -1).map((line) => line.i), Array.from({ length: lines.length - 2 }, (_, j) => 6000 - (lines.length - 2) + j));
});
