import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import { CorruptStateError, SlotStateFile } from '../../agent/slot-state.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/** A state file that parses as JSON and names ids where reports need them, one of them not an id (a disk fault, a hand edit). */
function stateWith(ids: { installedBy?: string; candidateAssignmentId?: string }): string {
  const active = { model: 'sensor-classifier', version: '1', sha256: world.v1.id };
  return JSON.stringify({
    schema: 1,
    active,
    candidate: ids.candidateAssignmentId === undefined ? null : { ...active, version: '2', sha256: world.v2.id },
    previous: null,
    candidateBenchmarked: ids.candidateAssignmentId === undefined,
    ...(ids.candidateAssignmentId === undefined ? {} : { candidateAssignmentId: ids.candidateAssignmentId }),
    pending: null,
    handledIds: [],
    ...(ids.installedBy === undefined ? {} : { installedBy: { [world.v1.id]: ids.installedBy } }),
    unsentReports: [],
  });
}

test('a state file whose installedBy or candidateAssignmentId is not a message id is corrupt: set aside, not a ZodError later', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-audit-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const ids of [{ installedBy: 'not an id!' }, { candidateAssignmentId: 'x' }]) {
    const path = join(dir, 'state.json');
    await writeFile(path, stateWith(ids));
    await assert.rejects(new SlotStateFile(path).load(), CorruptStateError, JSON.stringify(ids));
  }
});

test('an agent whose state file names a lost model\'s installer by something that is not an id starts (the file set aside) and is restored by its assignment, instead of failing every start', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-audit-state-agent-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  // The active model's files are gone (not in models/), so the start reports the loss as a refusal of its installer.
  await writeFile(join(dataDir, 'state.json'), stateWith({ installedBy: 'not an id!' }));
  const { agent } = await startAgent(t, world, 'audit-state-1', { dataDir });
  assert.ok((await readdir(dataDir)).some((name) => name.startsWith('state.json.corrupt-')), 'the state file was set aside');
  assert.equal(agent.slots.active?.version ?? null, null, 'no active model until the assignment restores it');
  const assignment = await world.assign('audit-state-1', world.v1, 'active');
  await world.waitForReport(isOutcome(assignment.id, 'activated'));
  assert.equal(agent.slots.active?.sha256, world.v1.id);
});
