import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import type { Principal } from '../../server/auth/principal.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import type { RolloutListFilter, RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { RolloutPhase } from '../../server/rollout/rollout-state.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { T0 } from '../rollout/rollout-fixtures.ts';
import { testDevices } from './helpers/rollout-fixtures.ts';

const ADMIN = { kind: 'token', name: 'admin', role: 'admin' } as unknown as Principal;
const fullRollout = (version: string) => parseRolloutSpec(`{model: wine, candidateVersion: "${version}", steps: [{setWeight: 100}]}`, 'spec');

/**
 * Rolling back a promoted rollout while a newer rollout of the model starts: the rollback checks
 * that no newer rollout is under way, the start that no other is. Both passed their checks when
 * they ran side by side (the window is a few store reads, wide on PostgreSQL), and the rollback
 * then sent every device back under the new rollout, which had read their baselines before. They
 * take turns: the start waits for the rollback, and reads the fleet it left.
 */
test('a rollout start waits for a rollback under way, so it never takes a baseline that rollback is undoing', async (t) => {
  const inner = new InMemoryRolloutRepository();
  // Holds the rollback's check for newer rollouts (a list by model alone) until released.
  let holdCheck: Promise<void> | undefined;
  let release = () => {};
  const phaseOfOlderAtCreate: RolloutPhase[] = [];
  let olderId = '';
  const repository: RolloutRepository = new Proxy(inner, {
    get(target, property) {
      if (property === 'list') {
        return async (filter?: RolloutListFilter) => {
          const ids = await target.list(filter);
          if (holdCheck && filter?.unfinished === undefined) await holdCheck; // read, then slow to return
          return ids;
        };
      }
      if (property === 'create') {
        return async (record: Parameters<RolloutRepository['create']>[0]) => {
          if (olderId) {
            phaseOfOlderAtCreate.push((await target.load(olderId))!.state.phase);
            release(); // the old code got here while the rollback was held: let it go on
          }
          return target.create(record);
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const fleet = new InMemoryFleet(testDevices(3));
  let n = 0;
  const controller = new RolloutController({
    repository,
    fleet,
    models: new InMemoryModelStatus('1'),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler: new ManualScheduler(T0),
    newId: () => `ro-race-${++n}`,
  });
  t.after(() => controller.stop());
  const store = {
    models: { getVersion: async (model: string, version: string) => ({ model, version, retired: false, manifest: { task: 'classification' } }) },
    audit: { append: async () => {} },
    engine: { get: async () => undefined }, // no version statuses recorded
  };
  const service = new RolloutService({ store, repository, controller: () => controller } as unknown as RolloutServiceOptions);

  const older = await service.start(fullRollout('2'), ADMIN);
  olderId = older.state.id;
  for (let i = 0; (await inner.load(olderId))!.state.phase !== 'Completed' || (await inner.load(olderId))!.pendingActions.length > 0; i++) {
    assert.ok(i < 200, 'the first rollout completes');
    await delay(10);
  }
  assert.deepEqual([...fleet.devices.values()].map((device) => device.active), ['2', '2', '2']);

  holdCheck = new Promise<void>((resolve) => (release = resolve));
  const rollback = service.command(olderId, 'rollback', ADMIN);
  await delay(20); // the rollback is held in its check
  const start = service.start(fullRollout('3'), ADMIN);
  // The start waits for the rollback (new code): release the check after a while.
  const timer = setTimeout(() => release(), 500);
  t.after(() => clearTimeout(timer));
  const [rolledBack, started] = await Promise.allSettled([rollback, start]);
  assert.equal(rolledBack.status, 'fulfilled', String((rolledBack as PromiseRejectedResult).reason));
  // The start ran after the rollback: refused while the rollback still sends its devices back, or
  // created after it, over the baselines it left. Never created while the older one was Completed.
  if (started.status === 'rejected') {
    assert.match(String(started.reason), /still sending its devices their models|still recording its version statuses/);
    assert.deepEqual(phaseOfOlderAtCreate, []);
  } else {
    assert.deepEqual(phaseOfOlderAtCreate, ['RolledBack'], 'the newer rollout was created only after the rollback was recorded');
    assert.deepEqual(started.value.state.devices.map((device) => device.baseline), ['1', '1', '1']);
  }
});
