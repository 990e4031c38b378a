import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DataDir } from '../../agent/data-dir.ts';

test('preparing the data directory removes temp files of a state write a crash interrupted, and nothing else', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-datadir-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, 'state.json'), '{}');
  await writeFile(join(root, '.state.json.tmp-0a1b2c3d4e5f'), '{"half":');
  await writeFile(join(root, 'state.json.corrupt-2026-03-01T09-00-00-000Z'), 'kept for inspection');
  await new DataDir(root).prepare();
  assert.deepEqual((await readdir(root)).sort(), ['downloads', 'models', 'outbox', 'state.json', 'state.json.corrupt-2026-03-01T09-00-00-000Z']);
});
