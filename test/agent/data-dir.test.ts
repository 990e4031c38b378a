import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DataDir } from '../../agent/data-dir.ts';
import { tempDir } from '../helpers/cli.ts';

test('preparing the data directory removes temp files of a state write a crash interrupted, and nothing else', async (t) => {
  const root = await tempDir(t, 'fleetprune-datadir-');
  await writeFile(join(root, 'state.json'), '{}');
  await writeFile(join(root, '.state.json.tmp-0a1b2c3d4e5f'), '{"half":');
  // A directory by such a name (not the agent's) would otherwise stop every start.
  await mkdir(join(root, '.state.json.tmp-ffffffffffff', 'inside'), { recursive: true });
  await writeFile(join(root, 'state.json.corrupt-2026-03-01T09-00-00-000Z'), 'kept for inspection');
  await new DataDir(root).prepare();
  assert.deepEqual((await readdir(root)).sort(), ['downloads', 'models', 'outbox', 'state.json', 'state.json.corrupt-2026-03-01T09-00-00-000Z']);
});
