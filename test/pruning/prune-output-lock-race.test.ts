import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { nodeArgsFor, REPO_ROOT, tempDir } from '../helpers/cli.ts';
import { lockPruneOutput } from '../../server/cli/prune-output-lock.ts';

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/** A contender process (helpers/lock-contender.ts); `result` is its first line, `done` ends it (a holder releases). */
function contend(t: TestContext, out: string, startAt: number): { result: Promise<string>; done: () => Promise<void> } {
  const child = spawn(process.execPath, [...nodeArgsFor('test/pruning/helpers/lock-contender.ts'), out, String(startAt)], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  // 'close', not 'exit': a child can exit before its last output is read, and that line would be missed.
  const exited = once(child, 'close');
  // A failed test must not leave a holder waiting on its stdin (and the test process with it).
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  const result = new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('\n')) resolve(stdout.split('\n')[0]!);
    });
    void exited.then(() => reject(new Error(`the contender exited without a line: ${stdout}`)));
  });
  return {
    result,
    done: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

test('runs started together after a kill -9 left a stale lock: exactly one takes it over, the others are refused naming it', async (t) => {
  const dir = await tempDir(t);
  for (let round = 0; round < 2; round++) {
    const out = join(dir, `model-${round}`);
    await writeFile(`${out}.lock`, `${deadPid()}\n`);
    const startAt = Date.now() + 1500; // after every contender has loaded
    const contenders = Array.from({ length: 6 }, () => contend(t, out, startAt));
    // Every one has tried before the holder lets go: a late starter cannot find the lock free.
    const results = await Promise.all(contenders.map((contender) => contender.result));
    await Promise.all(contenders.map((contender) => contender.done()));
    const held = results.filter((result) => result === 'held');
    assert.equal(held.length, 1, `round ${round}: ${results.join(' | ')}`);
    for (const refused of results.filter((result) => result !== 'held')) {
      assert.match(refused, /^refused: --out .*model-\d is being written by another fleetprune prune \(process \d+\); wait for it to finish or choose another --out$/);
    }
  }
  assert.deepEqual(await readdir(dir), [], 'no lock, takeover or temporary file is left');
});

test('a run that saw the stale lock does not remove the lock another run has just taken over', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'model');
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  writeFileSync(`${out}.lock`, `${deadPid()}\n`);
  // Between this run seeing the stale lock and taking it over, the other run takes it over.
  const onStaleLock = () => {
    unlinkSync(`${out}.lock`);
    writeFileSync(`${out}.lock`, `${other.pid}\n`);
  };
  assert.throws(() => lockPruneOutput(out, { onStaleLock }), new RegExp(`is being written by another fleetprune prune \\(process ${other.pid}\\)`));
  assert.equal(readFileSync(`${out}.lock`, 'utf8').split('\n')[0], `${other.pid}`, "the other run's lock stands");
  // Once that run is gone, its lock is stale in turn and taken over.
  other.kill('SIGKILL');
  await once(other, 'exit');
  const lock = lockPruneOutput(out);
  assert.equal(readFileSync(`${out}.lock`, 'utf8').split('\n')[0], `${process.pid}`);
  lock.release();
  assert.deepEqual(await readdir(dir), []);
});

test('a prune lock records its boot and process start: one whose id now names another running process (a reboot) is taken over; one naming its holder is not', { skip: process.platform !== 'linux' && 'boot and start identities come from Linux /proc' }, async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'model');
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  await once(other, 'spawn');
  // A run's lock records which boot and process start its id belongs to...
  const first = lockPruneOutput(out);
  const [pid, identity] = readFileSync(`${out}.lock`, 'utf8').split('\n');
  assert.equal(pid, `${process.pid}`);
  assert.match(identity!, /^\S+ \d+$/, 'boot id and start time');
  first.release();
  // ... so after a reboot that gave its id to another running process, it is seen to be stale.
  writeFileSync(`${out}.lock`, `${other.pid}\n${identity}\n`);
  const lock = lockPruneOutput(out);
  assert.equal(readFileSync(`${out}.lock`, 'utf8').split('\n')[0], `${process.pid}`);
  lock.release();
  // The same process, recorded as itself by a lock it took (a contender's): it holds the lock.
  const holder = spawn(process.execPath, [...nodeArgsFor('test/pruning/helpers/lock-contender.ts'), out, String(Date.now())], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => holder.kill('SIGKILL'));
  const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
  assert.equal(line.toString().trim(), 'held');
  assert.throws(() => lockPruneOutput(out), new RegExp(`\\(process ${holder.pid}\\)`));
  holder.stdin!.end();
  await once(holder, 'exit');
});
