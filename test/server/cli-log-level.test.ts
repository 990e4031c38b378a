import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from '../helpers/cli.ts';

test('a bad FLEETPRUNE_LOG_LEVEL is a one-line usage error for every command, also those that do not log, and nothing is done', async (t) => {
  const dir = await tempDir(t);
  const result = await runCli(['keys', 'generate', '--out', join(dir, 'keys')], { FLEETPRUNE_LOG_LEVEL: 'bogus' });
  assert.equal(result.code, 2);
  assert.equal(result.stderr, 'fleetprune: FLEETPRUNE_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, not "bogus"\n');
  assert.deepEqual(await readdir(dir), [], 'no keys were written');
});
