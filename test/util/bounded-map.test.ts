import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setBounded } from '../../shared/util/bounded-map.ts';

test('setBounded keeps the newest entries, and setting a key again makes it newest', () => {
  const map = new Map<string, number>();
  for (const [i, key] of ['a', 'b', 'c'].entries()) setBounded(map, key, i, 2);
  assert.deepEqual([...map], [['b', 1], ['c', 2]]);
  setBounded(map, 'b', 10, 2);
  setBounded(map, 'd', 3, 2);
  assert.deepEqual([...map], [['b', 10], ['d', 3]], 'b was refreshed, so c went first');
});
