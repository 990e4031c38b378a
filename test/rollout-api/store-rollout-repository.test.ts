import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openStore } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { RevisionConflictError } from '../../server/rollout/rollout-repository.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { STORE_ENGINES, freshStoreLocation } from '../server/helpers/store-engines.ts';
import { ReducerHarness, STAGED_STEPS, specOf } from '../rollout/rollout-fixtures.ts';
import { registerVersion } from './helpers/rollout-fixtures.ts';

for (const engine of STORE_ENGINES) {
  describe(`store rollout repository (${engine})`, () => {
    test('create, load, list, commit with revision check, executed ids and decisions', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      const repo = new StoreRolloutRepository(store.engine);

      const a = new ReducerHarness(specOf(STAGED_STEPS), undefined, '1', 'ro-a');
      const b = new ReducerHarness(specOf(STAGED_STEPS, { model: 'beer' }), undefined, '1', 'ro-b');
      await repo.create({ state: a.state, pendingActions: a.actions, decisions: a.decisions });
      await repo.create({ state: b.state, pendingActions: b.actions, decisions: b.decisions });
      await assert.rejects(repo.create({ state: a.state, pendingActions: [], decisions: [] }), /already exists/);

      const loaded = await repo.load('ro-a');
      assert.equal(loaded?.revision, 1);
      assert.deepEqual(loaded?.state, a.state);
      assert.deepEqual(loaded?.pendingActions, a.actions);
      assert.equal(await repo.load('ro-none'), undefined);
      assert.deepEqual(await repo.list(), ['ro-b', 'ro-a']);
      assert.deepEqual(await repo.list({ model: 'wine' }), ['ro-a']);
      assert.deepEqual(await repo.list({ unfinished: true }), ['ro-b', 'ro-a']);

      const assign = a.last('assign');
      a.deliver(assign);
      const newDecisions = a.decisions.slice(loaded!.state ? a.decisions.length - 1 : 0);
      const revision = await repo.commit('ro-a', { expectedRevision: 1, state: a.state, pendingActions: [], executedActionIds: [assign.id], decisions: newDecisions });
      assert.equal(revision, 2);
      assert.equal(await repo.isExecuted('ro-a', assign.id), true);
      assert.equal(await repo.isExecuted('ro-b', assign.id), false);
      assert.deepEqual(await repo.executedActions('ro-a'), [assign.id]);

      // A stale revision changes nothing, not even the executed ids or the decision log.
      const before = await repo.decisions('ro-a');
      await assert.rejects(
        repo.commit('ro-a', { expectedRevision: 1, state: b.state, pendingActions: [], executedActionIds: ['x-1'], decisions: [{ ...a.decisions[0]!, id: 'd-stale' }] }),
        RevisionConflictError,
      );
      assert.equal((await repo.load('ro-a'))?.revision, 2);
      assert.equal(await repo.isExecuted('ro-a', 'x-1'), false);
      assert.deepEqual(await repo.decisions('ro-a'), before);

      const all = await repo.decisions('ro-a');
      assert.ok(all.length >= 2);
      assert.deepEqual(await repo.decisions('ro-a', { afterId: all[0]!.id, limit: 1 }), [all[1]]);
      assert.deepEqual(await repo.decisions('ro-a', { afterId: all.at(-1)!.id }), []);

      // Terminal with nothing pending: no longer unfinished.
      a.send({ type: 'abort', at: a.at, by: 'alice' });
      for (const action of a.actions.filter((x) => x.kind === 'revert' || x.kind === 'markVersion' || x.kind === 'stopAnalysis')) a.deliver(action);
      await repo.commit('ro-a', { expectedRevision: 2, state: { ...a.state, phase: 'Aborted', devices: a.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })) }, pendingActions: [], executedActionIds: [], decisions: [] });
      assert.deepEqual(await repo.list({ unfinished: true }), ['ro-b']);
    });

    test('version status over the registry: production alias, failed, idempotent by command id, audited', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      await registerVersion(store, 'wine', '1');
      await registerVersion(store, 'wine', '2');
      const status = new RegistryModelStatus(store);
      assert.equal(await status.productionVersion('wine'), null);
      await status.setVersionStatus({ commandId: 'ro-a-a1', model: 'wine', version: '2', status: 'production', reason: 'promoted' });
      await status.setVersionStatus({ commandId: 'ro-a-a1', model: 'wine', version: '2', status: 'production', reason: 'promoted' });
      assert.equal(await status.productionVersion('wine'), '2');
      await status.setVersionStatus({ commandId: 'ro-a-a2', model: 'wine', version: '2', status: 'rolled-back', reason: 'operator' });
      assert.deepEqual((await status.versionStatus('wine', '2'))?.status, 'rolled-back');
      assert.equal(await status.productionVersion('wine'), null, 'a rolled-back version loses the production alias');
      await status.setVersionStatus({ commandId: 'ro-a-a4', model: 'wine', version: '1', status: 'production', reason: 'restored' });
      const audit = await store.audit.list({ limit: 50 });
      assert.equal(audit.filter((entry) => entry.action === 'version.status').length, 3);
      assert.equal(audit.filter((entry) => entry.action === 'alias.set' && entry.actor === 'rollout-controller').length, 2);
      await assert.rejects(status.setVersionStatus({ commandId: 'ro-a-a3', model: 'wine', version: '9', status: 'production', reason: 'x' }), /not in the registry/);
      assert.equal(await status.productionVersion('wine'), '1');
    });
  });
}
