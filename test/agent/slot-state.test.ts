import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptStateError, EMPTY_STATE, SlotStateFile, mootActivationCause } from '../../agent/slot-state.ts';
import { makeFifo, releaseFifo, settlesWithin } from './fifo.ts';

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

test('a state file with the count of slot-changing fleet commands an older agent kept still loads (the count ignored); moot is judged by issue times', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-slot-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pending = { schema: 1, id: 'assign-old-0002', issuedAt: '2026-01-01T00:00:00.000Z', model: 'iris', version: '2', sha256: 'b'.repeat(64), url: 'http://server:8080/api/artifacts/b/manifest.json', role: 'active', seq: 3, signature: 'x' };
  const path = join(dir, 'state.json');
  await writeFile(path, JSON.stringify({ ...EMPTY_STATE, pending, slotCommands: 2, pendingAfterSlotCommands: 1 }));
  const state = await new SlotStateFile(path).load();
  assert.equal(state.pending?.id, 'assign-old-0002');
  assert.equal('slotCommands' in state || 'pendingAfterSlotCommands' in state, false, 'the old count is dropped');
  const activation = state.pending!;
  assert.equal(mootActivationCause(state, activation), undefined, 'no rollback or drop on record');
  assert.equal(mootActivationCause({ ...state, rolledBackAt: '2026-01-01T00:00:01.000Z' }, activation), 'rollback', 'a rollback issued after it');
  assert.equal(mootActivationCause({ ...state, rolledBackAt: '2025-12-31T23:59:59.000Z' }, activation), undefined, 'a rollback issued before it');
  assert.equal(mootActivationCause({ ...state, droppedCandidate: { sha256: 'c'.repeat(64), issuedAt: '2026-01-02T00:00:00.000Z' } }, activation), undefined, 'another model dropped');
  assert.equal(mootActivationCause({ ...state, droppedCandidate: { sha256: 'b'.repeat(64), issuedAt: '2026-01-02T00:00:00.000Z' } }, activation), 'drop-candidate', 'its model dropped after it');
  const active = { model: 'iris', version: '2', sha256: 'b'.repeat(64) };
  assert.equal(mootActivationCause({ ...state, active, rolledBackAt: '2026-01-01T00:00:01.000Z' }, activation), undefined, 'its model is active already');
});

test('a state file with the single pending fleet command an older agent kept loads it into the list of commands to resume', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-slot-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pendingCommand = { schema: 1, id: 'command-old-0001', issuedAt: '2026-01-01T00:00:00.000Z', command: 'rollback', selector: {}, seq: 4, signature: `${'A'.repeat(86)}==` };
  const path = join(dir, 'state.json');
  await writeFile(path, JSON.stringify({ ...EMPTY_STATE, pendingCommand }));
  const state = await new SlotStateFile(path).load();
  assert.deepEqual(state.pendingCommands?.map((command) => command.id), ['command-old-0001']);
  assert.equal('pendingCommand' in state, false, 'read into the list');
});

test('a state file that is a FIFO is corrupt at once, never read, and is set aside (it blocked the start for good); a directory stays a named EISDIR', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-slot-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'state.json');
  makeFifo(path);
  const file = new SlotStateFile(path);
  const outcome = await settlesWithin(file.load(), 3000, () => releaseFifo(path));
  assert.notEqual(outcome, 'blocked', 'loading is still blocked on the FIFO after 3 s');
  assert.ok(outcome !== 'blocked' && 'error' in outcome, 'a FIFO is not a state');
  assert.ok(outcome.error instanceof CorruptStateError, String(outcome.error));
  assert.equal(outcome.error.message, `${path}: not a regular file`);
  // What the agent does with a corrupt state file: renamed out of the way, the slots empty.
  const aside = await file.setAside(new Date('2026-03-01T09:00:00.000Z'));
  assert.equal(aside, `${path}.corrupt-2026-03-01T09-00-00-000Z`);
  assert.ok((await stat(aside)).isFIFO());
  assert.deepEqual(await readdir(dir), ['state.json.corrupt-2026-03-01T09-00-00-000Z']);
  assert.deepEqual(await file.load(), EMPTY_STATE);

  // A directory is what it was: a system error naming the path, which stops the agent with one line.
  await mkdir(path);
  await assert.rejects(file.load(), (error: NodeJS.ErrnoException) => {
    assert.ok(!(error instanceof CorruptStateError));
    assert.deepEqual([error.code, error.syscall, error.path, error.message], ['EISDIR', 'read', path, 'EISDIR: illegal operation on a directory, read']);
    return true;
  });
});

test('a corrupt state file that cannot be set aside leaves the slots empty all the same, and the next save sets it aside before writing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-slot-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'state.json');
  await writeFile(path, '{"schema": 1, "act');
  const file = new SlotStateFile(path);
  await assert.rejects(file.load(), CorruptStateError);
  // The rename fails (as on a read-only disk): here a non-empty directory holds the name it goes to.
  const aside = `${path}.corrupt-2026-03-01T09-00-00-000Z`;
  await mkdir(join(aside, 'blocker'), { recursive: true });
  await assert.rejects(file.setAside(new Date('2026-03-01T09:00:00.000Z')), (error: NodeJS.ErrnoException) => error.code === 'EISDIR' || error.code === 'ENOTEMPTY');
  assert.deepEqual(file.state, EMPTY_STATE, 'the slots are empty');
  assert.equal(await readFile(path, 'utf8'), '{"schema": 1, "act', 'the corrupt file is where it was');

  await rm(aside, { recursive: true });
  const next = { ...EMPTY_STATE, handledIds: ['assign-0001'] };
  await file.save(next);
  assert.equal(await readFile(aside, 'utf8'), '{"schema": 1, "act', 'set aside by the save, as it was');
  assert.deepEqual(await new SlotStateFile(path).load(), next, 'the new state written');
  assert.deepEqual((await readdir(dir)).sort(), ['state.json', 'state.json.corrupt-2026-03-01T09-00-00-000Z']);
  // Once only: a later save replaces state.json as usual.
  await file.save(EMPTY_STATE);
  assert.deepEqual(await new SlotStateFile(path).load(), EMPTY_STATE);
  assert.equal(await readFile(aside, 'utf8'), '{"schema": 1, "act', 'the file set aside stays');
});
