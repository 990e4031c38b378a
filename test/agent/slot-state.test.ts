import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SlotStateFile } from '../../agent/slot-state.ts';

test('a state file written before assignments were signed still loads: its pending assignment is resumed, not the whole state lost', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-slot-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const active = { model: 'iris', version: '1', sha256: 'a'.repeat(64) };
  const pending = { schema: 1, id: 'assign-old-0001', issuedAt: '2026-01-01T00:00:00.000Z', model: 'iris', version: '2', sha256: 'b'.repeat(64), url: 'http://server:8080/api/artifacts/b/manifest.json', role: 'candidate' };
  const path = join(dir, 'state.json');
  await writeFile(path, JSON.stringify({ schema: 1, active, candidate: null, previous: null, candidateBenchmarked: true, pending, handledIds: ['assign-old-0000'], unsentReports: [] }));
  const state = await new SlotStateFile(path).load();
  assert.deepEqual(state.active, active);
  assert.deepEqual([state.pending?.id, state.pending?.seq, state.pending?.signature], ['assign-old-0001', 0, '']);
  assert.equal(state.assignmentSeq, undefined, 'no number taken yet: the next signed assignment is newer');
});
