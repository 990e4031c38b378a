import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { ProductionMovedError } from '../../server/rollout/rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { ReducerHarness, T0, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import type { Principal } from '../../server/auth/principal.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { registerVersion, testDevices } from './helpers/rollout-fixtures.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

/**
 * The production alias of a model with a rollout under way is the rollout's: an operator moving it
 * onto the candidate (the rollout's abort then took it away: no production version at all, every
 * device on the baseline, `assign --version production` failing) or off the baseline, or clearing
 * it, is refused with a 409 naming the rollout, over REST, gRPC and the CLI, and nothing changes.
 */

const HELD = { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 100 }] };

async function heldRollout(s: RolloutTestServer): Promise<string> {
  const started = await s.request('POST', '/api/rollouts', { json: HELD });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused' && v.stepIndex === 1);
  return id;
}

async function production(s: RolloutTestServer): Promise<string | null> {
  const answer = await s.request('GET', '/api/models/wine/versions/production');
  if (answer.status === 404) return null;
  assert.equal(answer.status, 200, await answer.clone().text());
  return ((await answer.json()) as { version: string }).version;
}

for (const engine of STORE_ENGINES) {
  describe(`the production alias during a rollout (${engine})`, () => {
    test('moving it onto the candidate, off the baseline, or clearing it is a 409 naming the rollout (REST, gRPC, CLI); after an abort the baseline is still production', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      await registerVersion(s.server.ctx.store, 'wine', '3');
      const grpc = grpcClient(s.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => grpc.close());
      const id = await heldRollout(s);
      const auditBefore = (await s.server.ctx.store.audit.list({ limit: 1000 })).length;

      const expected = (verb: 'moved' | 'cleared') =>
        `the production alias of wine was not ${verb}: rollout ${id} of wine (Paused) is under way, and the production alias is the rollout's to move: finish, abort or roll it back first`;
      for (const version of ['2', '3']) {
        const moved = await s.request('PUT', '/api/models/wine/aliases/production', { json: { version } });
        assert.equal(moved.status, 409, `PUT production -> ${version}`);
        assert.deepEqual(await moved.json(), { error: { code: 'conflict', message: expected('moved') } });
      }
      const cleared = await s.request('DELETE', '/api/models/wine/aliases/production');
      assert.equal(cleared.status, 409);
      assert.equal(((await cleared.json()) as any).error.message, expected('cleared'));

      const viaGrpc = await grpc.call('SetAlias', { name: 'wine', alias: 'production', version: '2' }).then(
        () => assert.fail('SetAlias onto the candidate was accepted'),
        (error: { code: number; details: string }) => error,
      );
      assert.equal(viaGrpc.code, status.FAILED_PRECONDITION);
      assert.equal(viaGrpc.details, expected('moved'));

      const cli = await runCli(['models', 'alias', 'wine@2', 'production', '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
      assert.equal(cli.code, 2, cli.stderr);
      assert.equal(cli.stderr, `fleetprune: ${expected('moved')}\n`);

      // Nothing changed: the alias, the audit log, and the candidate alias still moves freely.
      assert.equal(await production(s), '1');
      assert.equal((await s.server.ctx.store.audit.list({ limit: 1000 })).length, auditBefore);
      const candidateAlias = await s.request('PUT', '/api/models/wine/aliases/candidate', { json: { version: '2' } });
      assert.equal(candidateAlias.status, 200, await candidateAlias.clone().text());

      // The abort leaves the baseline production, and the model's production version assignable.
      const aborted = await s.request('POST', `/api/rollouts/${id}/abort?reason=INC-42`);
      assert.equal(aborted.status, 200, await aborted.clone().text());
      await waitForRollout(s.request, id, (v) => v.phase === 'Aborted' && v.pendingActions.length === 0);
      assert.equal(await production(s), '1');
      const statusOf2 = ((await (await s.request('GET', '/api/models/wine/versions/2')).json()) as any).status;
      assert.equal(statusOf2.status, 'failed');

      // Finished: the alias is the operator's again.
      const after = await s.request('PUT', '/api/models/wine/aliases/production', { json: { version: '3' } });
      assert.equal(after.status, 200, await after.clone().text());
      assert.equal(await production(s), '3');
    });

    test('a start that read the production alias before an operator moved it is refused when it stores the rollout; nothing is stored', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        for (const version of ['1', '2', '3']) await registerVersion(store, 'wine', version);
        const setProduction = (version: string) => store.models.setAlias({ model: 'wine', alias: 'production', version, updatedAt: new Date().toISOString(), updatedBy: 'test' });
        await setProduction('1');
        const repository = new StoreRolloutRepository(store.engine);
        // The controller read production 1; the alias moved before the rollout was stored (the race).
        const controller = new RolloutController({
          repository,
          fleet: new InMemoryFleet(testDevices(2)),
          models: new InMemoryModelStatus('1'),
          providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
          scheduler: new ManualScheduler(T0),
        });
        t.after(() => controller.stop());
        const spec = () => parseRolloutSpec(`{model: wine, candidateVersion: "2", steps: [{setWeight: 50}, {pause: {}}]}`, 'spec');

        await setProduction('2');
        await assert.rejects(controller.start(spec(), { by: 'alice' }), (error: unknown) => {
          assert.ok(error instanceof ProductionMovedError, `a ProductionMovedError: ${String(error)}`);
          assert.equal(error.message, 'wine 2 is already production');
          return true;
        });
        await setProduction('3');
        await assert.rejects(controller.start(spec(), { by: 'alice' }), /^ProductionMovedError: the production alias of wine moved \(to 3, from 1\) while the rollout was starting; start it again$/);
        assert.deepEqual(await repository.list({ model: 'wine' }), [], 'nothing stored');

        // With the alias where the start read it, the rollout is stored.
        await setProduction('1');
        const started = await controller.start(spec(), { by: 'alice' });
        assert.deepEqual(await repository.list({ model: 'wine' }), [started.id]);
      });
    });

    test('a finished rollout still recording its version statuses holds the alias until it has; a finished one that has does not', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        for (const version of ['1', '2', '3']) await registerVersion(store, 'wine', version);
        await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
        const registry = new RegistryService(store);
        const operator = { tokenId: 'op', role: 'operator' } as unknown as Principal;
        const rollouts = new StoreRolloutRepository(store.engine);
        const aborted = (id: string) => {
          const h = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(2), '1', id);
          h.deliver(h.last('assign'));
          h.send({ type: 'abort', at: h.at, by: 'ops' });
          h.deliver(h.last('revert'));
          return { state: h.state, markVersion: h.last('markVersion') };
        };
        const recording = aborted('ro-recording');
        await rollouts.create({ state: recording.state, pendingActions: [recording.markVersion], decisions: [] });
        await assert.rejects(registry.setAlias('wine', 'production', '2', operator), {
          message: 'the production alias of wine was not moved: rollout ro-recording of wine (Aborted) is still recording its version statuses (the production alias); try again once that is done',
        });
        assert.equal((await store.models.getAlias('wine', 'production'))?.version, '1');
        // Recorded: the alias is the operator's again.
        const revision = (await rollouts.load('ro-recording'))!.revision;
        await rollouts.commit('ro-recording', { expectedRevision: revision, state: recording.state, pendingActions: [], decisions: [], executedActionIds: [recording.markVersion.id] });
        assert.equal((await registry.setAlias('wine', 'production', '3', operator))?.version, '3');
      });
    });
  });
}
