import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceRolloutIndex } from '../../server/rollout/device-rollout-index.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { startRollout } from '../../server/rollout/rollout-state-machine.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

/** A started rollout of `model` to the first `devices` devices of the fleet. */
function started(id: string, model: string, devices: number, at: number) {
  const transition = startRollout(id, specOf([{ setWeight: 100 }], { model }), { type: 'start', at, by: 'a', devices: fleetOf(devices), previousProduction: null });
  return { state: transition.state, pendingActions: transition.actions, decisions: transition.decisions };
}

/** The real in-memory repository, counting loads. */
class CountingRepository extends InMemoryRolloutRepository {
  loads = 0;
  override load(id: string) {
    this.loads++;
    return super.load(id);
  }
}

test('per device and model, the newest rollout that includes the device; one scan of the history, then none', async () => {
  const repository = new CountingRepository();
  await repository.create(started('ro-wine-old', 'wine', 4, T0));
  await repository.create(started('ro-iris', 'iris', 2, T0 + 1000));
  await repository.create(started('ro-wine-new', 'wine', 2, T0 + 2000));
  const index = new DeviceRolloutIndex(repository);

  assert.deepEqual((await index.rolloutsOf('dev-01')).sort(), ['ro-iris', 'ro-wine-new'], 'the newer wine rollout speaks for dev-01');
  assert.deepEqual(await index.rolloutsOf('dev-03'), ['ro-wine-old'], 'dev-03 is only in the older wine rollout');
  assert.deepEqual(await index.rolloutsOf('dev-99'), []);
  assert.equal(repository.loads, 3, 'each rollout loaded once, by the first call');

  // A rollout started later (the controller adds it) takes over without another scan.
  const newest = started('ro-wine-newest', 'wine', 4, T0 + 3000);
  await repository.create(newest);
  index.add(newest.state);
  assert.deepEqual(await index.rolloutsOf('dev-03'), ['ro-wine-newest']);
  assert.equal(repository.loads, 3);
});

test('an older rollout rolled back after a newer one started speaks for their devices again, also after a restart (a new scan)', async () => {
  const repository = new CountingRepository();
  const old = started('ro-wine-old', 'wine', 4, T0);
  await repository.create(old);
  await repository.create(started('ro-wine-new', 'wine', 2, T0 + 1000));
  const index = new DeviceRolloutIndex(repository);
  assert.deepEqual(await index.rolloutsOf('dev-01'), ['ro-wine-new']);
  // The newer one failed (a terminal phase); the older one is rolled back after it.
  const rolledBack = { ...old.state, phase: 'RolledBack' as const, outcome: { status: 'rolled-back' as const, reason: 'r', at: T0 + 5000 } };
  await repository.commit('ro-wine-old', { expectedRevision: 1, state: rolledBack, pendingActions: [], executedActionIds: [], decisions: [] });
  index.add(rolledBack);
  assert.deepEqual(await index.rolloutsOf('dev-01'), ['ro-wine-old']);
  assert.deepEqual(await new DeviceRolloutIndex(repository).rolloutsOf('dev-01'), ['ro-wine-old'], 'the same from the stored states');
});

test('a rollback added while the first scan reads the same rollout is not undone by that older read', async () => {
  /** load('ro-wine-old') reads the stored record, then returns it only once released (a slow query). */
  class SlowRepository extends InMemoryRolloutRepository {
    release = () => {};
    readonly reading: Promise<void>;
    #reading = () => {};
    constructor() {
      super();
      this.reading = new Promise((resolve) => (this.#reading = resolve));
    }
    override async load(id: string) {
      const record = await super.load(id);
      if (id === 'ro-wine-old') {
        this.#reading();
        await new Promise<void>((resolve) => (this.release = resolve));
      }
      return record;
    }
  }
  const repository = new SlowRepository();
  const old = started('ro-wine-old', 'wine', 4, T0);
  await repository.create(old);
  await repository.create(started('ro-wine-new', 'wine', 2, T0 + 1000));
  const index = new DeviceRolloutIndex(repository);
  const first = index.rolloutsOf('dev-01');
  await repository.reading;
  const rolledBack = { ...old.state, phase: 'RolledBack' as const, rolledBackAt: T0 + 5000, outcome: { status: 'rolled-back' as const, reason: 'r', at: T0 + 5000 } };
  await repository.commit('ro-wine-old', { expectedRevision: 1, state: rolledBack, pendingActions: [], executedActionIds: [], decisions: [] });
  index.add(rolledBack);
  repository.release();
  assert.deepEqual(await first, ['ro-wine-old']);
});

test('a rollout added while the first scan runs is not overwritten by the older ones the scan finds', async () => {
  const repository = new CountingRepository();
  await repository.create(started('ro-wine-old', 'wine', 4, T0));
  const index = new DeviceRolloutIndex(repository);
  const first = index.rolloutsOf('dev-01');
  index.add(started('ro-wine-new', 'wine', 4, T0 + 1000).state);
  assert.deepEqual(await first, ['ro-wine-new']);
});

test('a failed scan is retried on the next call', async () => {
  const repository = new CountingRepository();
  await repository.create(started('ro-wine-old', 'wine', 4, T0));
  let failures = 1;
  const flaky = {
    list: () => (failures-- > 0 ? Promise.reject(new Error('database is locked')) : repository.list()),
    load: (id: string) => repository.load(id),
  };
  const index = new DeviceRolloutIndex(flaky);
  await assert.rejects(index.rolloutsOf('dev-01'), /database is locked/);
  assert.deepEqual(await index.rolloutsOf('dev-01'), ['ro-wine-old']);
});
