import assert from 'node:assert/strict';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { describe, test } from 'node:test';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { GRPC_STATUS, HTTP_STATUS, ServiceError } from '../../server/app/service-error.ts';
import type { Principal } from '../../server/auth/principal.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import type { RolloutListFilter } from '../../server/rollout/rollout-repository.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { Store } from '../../server/store/store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { ReducerHarness, T0, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';
import { registerVersion, testDevices } from './helpers/rollout-fixtures.ts';

/**
 * One rollout of a model at a time is decided by the store, not only by the leader's in-process
 * checks: two servers that both act as leader for a moment (a deposed one that has not noticed
 * yet, and the new one) cannot each store a rollout of the model, and a start through a stopped
 * controller (deposed mid-start) stores nothing and answers the 503 "retry" of a follower.
 */

const ADMIN = { tokenId: 'admin', role: 'admin', label: 'admin' } as unknown as Principal;
const pausingSpec = (model = 'wine', version = '2') => parseRolloutSpec(`{model: ${model}, candidateVersion: "${version}", steps: [{setWeight: 50}, {pause: {}}]}`, 'spec');

/** wine@1..3 in the registry, wine@1 production. */
async function wineRegistry(store: Store): Promise<void> {
  for (const version of ['1', '2', '3']) await registerVersion(store, 'wine', version);
  await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
}

function controllerOn(store: Store, repository = new StoreRolloutRepository(store.engine), fleet = new InMemoryFleet(testDevices(2))): RolloutController {
  return new RolloutController({
    repository,
    fleet,
    models: new InMemoryModelStatus('1'),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler: new ManualScheduler(T0),
  });
}

/** A server's RolloutService (its own in-process mutex) driving `controller`. */
function serviceOn(store: Store, controller: RolloutController, repository = new StoreRolloutRepository(store.engine)): RolloutService {
  return new RolloutService({ store, repository, controller: () => controller } as unknown as RolloutServiceOptions);
}

async function stopAll(controllers: readonly RolloutController[]): Promise<void> {
  for (const controller of controllers) controller.stop();
  for (const controller of controllers) await controller.idle();
}

for (const engine of STORE_ENGINES) {
  describe(`rollout starts fenced by the store (${engine})`, () => {
    test('two servers starting a rollout of one model at once: one is stored, the other refused with the 409 of a start; never two', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        // Each server's "no other rollout of wine under way" read returns only once both have read
        // (two processes: their mutexes do not see each other), so both pass that check.
        let arrived = 0;
        let release!: () => void;
        const bothRead = new Promise<void>((resolve) => (release = resolve));
        const linedUp = () => {
          const repository = new StoreRolloutRepository(store.engine);
          const list = repository.list.bind(repository);
          repository.list = async (filter?: RolloutListFilter) => {
            const ids = await list(filter);
            if (filter?.unfinished && filter.model === 'wine' && arrived < 2) {
              if (++arrived === 2) release();
              await bothRead;
            }
            return ids;
          };
          return repository;
        };
        const controllers = [controllerOn(store), controllerOn(store)];
        try {
          const results = await Promise.allSettled(controllers.map((controller) => serviceOn(store, controller, linedUp()).start(pausingSpec(), ADMIN)));
          const stored = await new StoreRolloutRepository(store.engine).list({ model: 'wine' });
          assert.equal(stored.length, 1, `one rollout of wine stored, not ${stored.length}: ${stored.join(', ')}`);
          const started = results.filter((result) => result.status === 'fulfilled');
          const refused = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
          assert.deepEqual([started.length, refused.length], [1, 1], `one start succeeds and one is refused: ${results.map((result) => result.status).join(', ')}`);
          assert.equal(started[0]!.value.state.id, stored[0]);
          const error: unknown = refused[0]!.reason;
          assert.ok(error instanceof ServiceError, `a ServiceError: ${String(error)}`);
          assert.equal(error.code, 'conflict');
          assert.match(error.message, new RegExp(`^model wine already has rollout ${stored[0]} \\((Progressing|Paused)\\); finish, abort or roll it back first$`));
          assert.equal((error.cause as Error | undefined)?.name, 'RolloutInTheWayError', 'refused by the store, with the model locked');
        } finally {
          await stopAll(controllers);
        }
      });
    });

    test("the store refuses a rollout of a model while another is in the way, as RolloutService.start does; not one finished with nothing left to send", async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        const repository = new StoreRolloutRepository(store.engine);
        const h = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }]), fleetOf(2), '1', 'ro-first');
        await repository.create({ state: h.state, pendingActions: h.actions, decisions: [] });
        let revision = 1;
        const commit = async (pendingActions: typeof h.actions) => {
          revision = await repository.commit('ro-first', { expectedRevision: revision, state: h.state, pendingActions, executedActionIds: [], decisions: [] });
        };
        let n = 0;
        const createNext = () => {
          const next = new ReducerHarness(specOf([{ setWeight: 100 }, { pause: {} }], { candidateVersion: '3' }), fleetOf(2), '1', `ro-next-${++n}`);
          return repository.create({ state: next.state, pendingActions: next.actions, decisions: [] });
        };
        const refusal = (reason: string, message: string) => (error: unknown) => {
          assert.equal((error as Error).name, 'RolloutInTheWayError', `a RolloutInTheWayError: ${String(error)}`);
          assert.deepEqual([(error as { reason?: string }).reason, (error as Error).message], [reason, message]);
          return true;
        };

        // Under way.
        await assert.rejects(createNext(), refusal('running', 'model wine already has rollout ro-first (Progressing); finish, abort or roll it back first'));
        // Aborted, its revert still to send.
        h.deliver(h.last('assign'));
        h.send({ type: 'abort', at: h.at, by: 'ops' });
        const revert = h.last('revert');
        const markVersion = h.last('markVersion');
        await commit([revert, markVersion]);
        await assert.rejects(createNext(), refusal('delivering', "model wine's rollout ro-first (Aborted) is still sending its devices their models (1 pending); start again once that is done"));
        // Sent (one device offline: retried later), its version statuses still to record.
        h.deliver(revert, (deviceId) => (deviceId === 'dev-01' ? 'offline' : 'delivered'));
        await commit([markVersion]);
        await assert.rejects(createNext(), refusal('recording', "model wine's rollout ro-first (Aborted) is still recording its version statuses (the production alias); start again once that is done"));
        assert.deepEqual(await repository.list({ model: 'wine' }), ['ro-first'], 'nothing stored by the refused creates');

        // Recorded: finished, though a device is still to be sent its baseline again (the store
        // counts it unfinished); RolloutService.start lets a new rollout start then, and so does the store.
        await commit([]);
        assert.deepEqual(await repository.list({ model: 'wine', unfinished: true }), ['ro-first'], 'a device still retrying keeps it unfinished');
        await createNext();
        assert.deepEqual(await repository.list({ model: 'wine' }), [`ro-next-${n}`, 'ro-first']);
      });
    });

    test("a rollback of a finished rollout, checked on one server before another stored a newer rollout of the model: refused by the store with the 409 of the leader's check; nothing changes", async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        const repository = new StoreRolloutRepository(store.engine);
        // ro-old promoted wine@2 to every device, and finished.
        const h = new ReducerHarness(specOf([{ setWeight: 100 }]), fleetOf(2), '1', 'ro-old');
        h.deliver(h.last('assign')); // the candidate installed
        h.deliver(h.last('assign')); // then activated
        assert.equal(h.state.phase, 'Completed', 'the first rollout completed');
        await repository.create({ state: h.state, pendingActions: [], decisions: [] });

        // Server A's rollback checks for newer rollouts of wine; its answer (none) comes back only
        // once server B has stored one (its start saw ro-old finished, with nothing left to send).
        let holding = true;
        let checking!: () => void;
        const checked = new Promise<void>((resolve) => (checking = resolve));
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        const held = new StoreRolloutRepository(store.engine);
        const list = held.list.bind(held);
        held.list = async (filter?: RolloutListFilter) => {
          const ids = await list(filter);
          if (holding && filter?.model === 'wine' && !filter.unfinished) {
            holding = false;
            checking();
            await released;
          }
          return ids;
        };
        const controllers = [controllerOn(store), controllerOn(store)];
        try {
          const rollback = serviceOn(store, controllers[0]!, held).command('ro-old', 'rollback', ADMIN);
          rollback.catch(() => {}); // awaited below
          await checked;
          const newer = await serviceOn(store, controllers[1]!).start(pausingSpec('wine', '3'), ADMIN);
          release();
          await assert.rejects(rollback, (error: unknown) => {
            assert.ok(error instanceof ServiceError, `a ServiceError: ${String(error)}`);
            assert.equal(error.code, 'conflict');
            assert.match(error.message, new RegExp(`^rollout ${newer.state.id} of wine \\((Progressing|Paused), 3\\) came after this one; rolling this one back would undo it: roll back ${newer.state.id} instead$`));
            return true;
          });
          const old = (await repository.load('ro-old'))!;
          assert.deepEqual([old.state.phase, old.revision, old.pendingActions], ['Completed', 1, []], 'the finished rollout is left as it was');
          assert.deepEqual(await repository.list({ model: 'wine', unfinished: true }), [newer.state.id], 'the newer rollout runs on');
        } finally {
          release();
          await stopAll(controllers);
        }
      });
    });

    test('a start through a stopped (deposed) controller, before or while it reads the fleet: the 503 a follower gives, nothing stored', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        const repository = new StoreRolloutRepository(store.engine);
        const deposed = controllerOn(store);
        deposed.stop();
        const refusedWith503 = (error: unknown) => {
          assert.ok(error instanceof ServiceError, `a ServiceError: ${String(error)}`);
          // Nothing stored: the same start may work shortly (on this server once it leads again, or on the leader).
          assert.equal(error.code, 'retry_later');
          assert.deepEqual([HTTP_STATUS[error.code], GRPC_STATUS[error.code]], [503, GrpcStatus.UNAVAILABLE]);
          assert.equal(error.message, 'this server stopped driving rollouts (it no longer holds the rollout leadership); nothing was started; retry shortly');
          return true;
        };
        await assert.rejects(serviceOn(store, deposed).start(pausingSpec(), ADMIN), refusedWith503);
        await assert.rejects(deposed.start(pausingSpec(), { by: 'alice' }), { name: 'RolloutControllerStoppedError' });

        // Deposed while the start reads the fleet (the lock session dropped and was taken again:
        // the new controller has recovered before this start stores anything).
        const fleet = new InMemoryFleet(testDevices(2));
        const midStart = controllerOn(store, repository, fleet);
        const listDevices = fleet.listDevices.bind(fleet);
        fleet.listDevices = async () => {
          const devices = await listDevices();
          midStart.stop();
          return devices;
        };
        await assert.rejects(serviceOn(store, midStart).start(pausingSpec(), ADMIN), refusedWith503);
        assert.deepEqual(await repository.list(), [], 'no rollout stored');
        assert.deepEqual(fleet.calls, [], 'nothing sent to the fleet');

        // A controller still leading starts it.
        const leader = controllerOn(store);
        try {
          const started = await serviceOn(store, leader).start(pausingSpec(), ADMIN);
          assert.deepEqual(await repository.list(), [started.state.id]);
        } finally {
          await stopAll([leader]);
        }
      });
    });

    test('a command through a stopped (deposed) controller: the 503 "retry shortly" of a stopped start, not a 500; nothing changes', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        const repository = new StoreRolloutRepository(store.engine);
        const leader = controllerOn(store, repository);
        try {
          const started = await serviceOn(store, leader).start(pausingSpec(), ADMIN);
          const id = started.state.id;
          await leader.idle();
          const before = (await repository.load(id))!;
          const decisionsBefore = (await repository.decisions(id)).length;
          leader.stop(); // deposed: its lock session dropped after the service found it (#leader)

          for (const command of ['pause', 'resume', 'promote', 'abort', 'rollback'] as const) {
            await assert.rejects(serviceOn(store, leader).command(id, command, ADMIN), (error: unknown) => {
              assert.ok(error instanceof ServiceError, `${command}: a ServiceError, not a plain Error (a 500): ${String(error)}`);
              assert.equal(error.code, 'retry_later', `${command}: retry_later`);
              assert.deepEqual([HTTP_STATUS[error.code], GRPC_STATUS[error.code]], [503, GrpcStatus.UNAVAILABLE], `${command}: 503 / UNAVAILABLE`);
              assert.equal(error.message, 'this server stopped driving rollouts (it no longer holds the rollout leadership); nothing was changed; retry shortly', `${command}: the message`);
              assert.equal((error.cause as Error | undefined)?.name, 'RolloutControllerStoppedError', `${command}: caused by the stopped controller`);
              return true;
            });
          }
          await assert.rejects(leader.dispatch(id, { type: 'pause', at: T0, by: 'alice' }), { name: 'RolloutControllerStoppedError', message: 'this server stopped driving rollouts (it no longer holds the rollout leadership); nothing was changed' });
          await assert.rejects(leader.note(id, { kind: 'command', verdict: 'waiting-for-broker', message: 'x' }), { name: 'RolloutControllerStoppedError', message: 'this server stopped driving rollouts (it no longer holds the rollout leadership); nothing was noted' });

          const after = (await repository.load(id))!;
          assert.deepEqual([after.revision, after.state.phase], [before.revision, before.state.phase], 'the rollout is left as it was');
          assert.equal((await repository.decisions(id)).length, decisionsBefore, 'no decision recorded');
        } finally {
          await stopAll([leader]);
        }
      });
    });
  });
}
