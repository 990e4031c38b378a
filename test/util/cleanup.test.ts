import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deferCleanup } from '../helpers/cleanup.ts';

test('deferred cleanups run last first, every one of them even when one fails, and hooks added after them still run', async (t) => {
  const ran: string[] = [];
  await t.test('a test with cleanups', (sub) => {
    deferCleanup(sub, () => ran.push('remove the data directory'));
    deferCleanup(sub, () => {
      ran.push('drop the schema');
      throw new Error('the schema was gone');
    });
    deferCleanup(sub, async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      ran.push('stop the server');
    });
    sub.after(() => ran.push('a plain after hook'));
  });
  assert.deepEqual(ran, ['stop the server', 'drop the schema', 'remove the data directory', 'a plain after hook']);
});
