import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RevisionConflictError } from '../../server/rollout/rollout-repository.ts';
import { startRollout } from '../../server/rollout/rollout-state-machine.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

describe('InMemoryRolloutRepository', () => {
  const transition = () => startRollout('ro-repo', specOf([{ setWeight: 50 }]), { type: 'start', at: T0, by: 'a', devices: fleetOf(4), previousProduction: null });

  it('commits atomically with a revision check, and records executed actions and decisions', async () => {
    const repository = new InMemoryRolloutRepository();
    const t = transition();
    await repository.create({ state: t.state, pendingActions: t.actions, decisions: t.decisions });
    await assert.rejects(repository.create({ state: t.state, pendingActions: [], decisions: [] }), /already exists/);
    const loaded = (await repository.load('ro-repo'))!;
    assert.equal(loaded.revision, 1);
    assert.deepEqual(loaded.pendingActions, t.actions);
    const revision = await repository.commit('ro-repo', { expectedRevision: 1, state: loaded.state, pendingActions: [], executedActionIds: [t.actions[0]!.id], decisions: [] });
    assert.equal(revision, 2);
    assert.equal(await repository.isExecuted('ro-repo', t.actions[0]!.id), true);
    await assert.rejects(
      repository.commit('ro-repo', { expectedRevision: 1, state: loaded.state, pendingActions: [], executedActionIds: [], decisions: [] }),
      (error: unknown) => error instanceof RevisionConflictError && /revision 2 in the store, expected 1/.test(error.message),
    );
    assert.deepEqual((await repository.decisions('ro-repo')).map((d) => d.id), t.decisions.map((d) => d.id));
    assert.deepEqual(await repository.decisions('ro-repo', { afterId: t.decisions[0]!.id, limit: 1 }), t.decisions.slice(1, 2));
  });

  it('hands out copies, so callers cannot change stored state', async () => {
    const repository = new InMemoryRolloutRepository();
    const t = transition();
    await repository.create({ state: t.state, pendingActions: t.actions, decisions: t.decisions });
    const loaded = (await repository.load('ro-repo'))!;
    (loaded.state as { phase: string }).phase = 'Completed';
    assert.equal((await repository.load('ro-repo'))!.state.phase, 'Progressing');
    assert.deepEqual(await repository.list({ unfinished: true }), ['ro-repo']);
  });
});
