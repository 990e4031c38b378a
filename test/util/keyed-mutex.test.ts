import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedMutex } from '../../shared/util/mutex.ts';

test('KeyedMutex: one key runs its work one at a time in call order, other keys alongside; idle keys leave no entry', async () => {
  const locks = new KeyedMutex();
  const events: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const first = locks.run('a', async () => {
    events.push('a1 start');
    await gate;
    events.push('a1 end');
    return 1;
  });
  const second = locks.run('a', () => {
    events.push('a2');
    throw new Error('a2 failed');
  });
  const third = locks.run('a', () => events.push('a3'));
  const other = locks.run('b', () => events.push('b1'));
  await other;
  assert.equal(locks.size, 1, 'b is idle again; a still has work');
  release();
  assert.equal(await first, 1);
  await assert.rejects(second, /a2 failed/);
  await third;
  assert.deepEqual(events, ['a1 start', 'b1', 'a1 end', 'a2', 'a3']);
  assert.equal(locks.size, 0, 'no entry is kept for keys without work');
  // A key used again after it was dropped still serializes.
  const order: number[] = [];
  await Promise.all([1, 2, 3].map((n) => locks.run('a', async () => {
    await new Promise((resolve) => setTimeout(resolve, 5 - n));
    order.push(n);
  })));
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(locks.size, 0);
});
