import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { ServiceError } from '../../server/app/service-error.ts';
import { TrustedKeys } from '../../server/artifacts/trusted-keys.ts';
import type { Principal } from '../../server/auth/principal.ts';
import type { Broker } from '../../server/broker/broker.ts';
import { AssignmentPublisher } from '../../server/fleet/assignment-publisher.ts';
import { AssignmentService } from '../../server/fleet/assignment-service.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { createLogger } from '../../shared/util/log.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { irisFleetWorld } from './iris-fleet-world.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';

/**
 * A direct assignment checks that its version is not retired, reads its devices, then records.
 * A retirement committed in between (another request, or another server) must not be assigned:
 * the record's transaction reads the flag again with the model's row locked (as a retirement and a
 * rollout's start lock it). A rollout's revert to a baseline retired since still records.
 */

const ADMIN = { tokenId: 'op', role: 'admin', label: 'op' } as unknown as Principal;

for (const engine of STORE_ENGINES) {
  test(`${engine}: a version retired between a direct assignment's check and its record is refused with the early check's 409; nothing recorded`, async (t) => {
    await withFreshStore(t, engine, async (store) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      await registerVersion(store, 'wine', '1', privateKey);
      await registerVersion(store, 'wine', '2', privateKey);
      const fleet = new FleetStore(store);
      await fleet.repos.devices.insert({ id: 'dev-1', labels: {}, secretHash: 'h', tokenId: 't', enrolledAt: new Date().toISOString(), enrolledBy: 't' });
      const registry = new RegistryService(store);
      // The operator's retirement lands right after the assignment read the version (and checked its flag).
      let retirement: Promise<unknown> | undefined;
      const racing = Object.create(registry) as RegistryService;
      racing.resolve = async (...args: Parameters<RegistryService['resolve']>) => {
        const version = await registry.resolve(...args);
        retirement ??= registry.setRetired('wine', '2', true, ADMIN);
        await retirement;
        return version;
      };
      const sent: string[] = [];
      const broker = { publish: async (topic: string) => void sent.push(topic) } as unknown as Broker;
      const log = createLogger('assign-retired-test', 'silent');
      const publisher = new AssignmentPublisher({ fleet, broker, serverUrl: () => 'http://127.0.0.1:9', log, signingKey: privateKey, trustedKeys: await TrustedKeys.load([], publicKey) });
      const request = { model: 'wine', version: '2', role: 'active' as const, deviceIds: ['dev-1'] };

      await assert.rejects(new AssignmentService({ fleet, registry: racing, publisher }).assign(request, 'op'), (error: unknown) => {
        assert.ok(error instanceof ServiceError, `a ServiceError: ${String(error)}`);
        assert.deepEqual([error.code, error.message], ['conflict', 'wine@2 is retired'], 'the 409 the early check gives');
        return true;
      });
      assert.ok(retirement, 'the retirement ran between the check and the record');
      assert.equal((await store.models.getVersion('wine', '2'))?.retired, true, 'wine@2 retired');
      assert.equal((await fleet.repos.devices.get('dev-1'))?.retainedAssignment ?? null, null, 'dev-1 retains no assignment');
      assert.deepEqual(await fleet.repos.assignments.listForDevice('dev-1'), [], 'no assignment recorded for dev-1');
      const actions = (await store.audit.list({ limit: 20 })).map((entry) => entry.action);
      assert.equal(actions.includes('assignment.create'), false, `no assignment audited: ${actions.join(', ')}`);
      assert.deepEqual(sent, [], 'nothing published');

      // Un-retired, the same assignment goes through (the lock is gone with the refused transaction).
      await registry.setRetired('wine', '2', false, ADMIN);
      const assigned = await new AssignmentService({ fleet, registry, publisher }).assign(request, 'op');
      assert.deepEqual([assigned.model, assigned.version], ['wine', '2']);
      const retained = (await fleet.repos.devices.get('dev-1'))?.retainedAssignment;
      assert.deepEqual([retained?.version, retained?.id], ['2', assigned.assignmentId], 'dev-1 retains the assignment');
    });
  });

  test(`${engine}: a rollout's rollback still reverts its devices to a baseline retired since the start`, async (t) => {
    const base = await irisFleetWorld(t, engine, 'retired-revert');
    if (!base) return;
    const { store, registry, fleet } = base;
    const controller = new RolloutController({
      repository: new StoreRolloutRepository(store.engine),
      fleet: fleet.fleetPort,
      models: new RegistryModelStatus(store),
      providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
      scheduler: new ManualScheduler(Date.now()),
      actionRetryMs: 1000,
      newId: () => 'ro-retired-baseline',
      startupGraceMs: 0,
    });
    t.after(() => controller.stop());
    const retained = async (id: string) => {
      const assignment = (await fleet.devices.get(id)).retainedAssignment;
      return assignment ? `${assignment.role}:${assignment.version}` : 'none';
    };

    await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }] }), { by: 'alice' });
    await controller.idle();
    const cohort = (await controller.status('ro-retired-baseline')).cohort;
    assert.equal(cohort.length, 1, 'a 50% step of two devices takes one');
    assert.equal(await retained(cohort[0]!), 'candidate:2', 'the cohort retains the candidate');
    // The baseline is retired meanwhile (it holds no alias, and is not the rollout's candidate).
    assert.equal((await registry.setRetired('iris', '1', true, ADMIN)).retired, true, 'iris@1 retired');

    assert.equal((await controller.rollback('ro-retired-baseline', 'bob', 'bad candidate')).phase, 'RolledBack');
    await controller.idle();
    assert.equal(await retained(cohort[0]!), 'active:1', 'the rollback retained the retired baseline for the cohort');
    const state = await controller.status('ro-retired-baseline');
    assert.deepEqual(state.devices.filter((device) => device.touched).map((device) => [device.id, device.desired]), [[cohort[0], 'baseline']], 'the rollout says its device is back on its baseline');
    const reverts = (await store.audit.list({ limit: 50 })).filter((entry) => entry.action === 'rollout.revert').map((entry) => entry.target);
    assert.deepEqual(reverts, ['model:iris@1'], 'the revert to iris@1 was recorded');
    assert.equal((await store.models.getVersion('iris', '1'))?.retired, true, 'iris@1 is still retired (the revert did not go through an un-retirement)');
  });
}
