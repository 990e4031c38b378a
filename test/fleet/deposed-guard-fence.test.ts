import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { TrustedKeys } from '../../server/artifacts/trusted-keys.ts';
import type { Broker } from '../../server/broker/broker.ts';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { AssignmentPublisher, type PublishRequest } from '../../server/fleet/assignment-publisher.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetPort } from '../../server/fleet/store-fleet-port.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { FleetPort } from '../../server/rollout/fleet-port.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { irisFleetWorld } from './iris-fleet-world.ts';
import { STORE_ENGINES, type StoreEngineName } from '../server/helpers/store-engines.ts';

/** A publisher whose next candidate recording stalls (a leader frozen between its guard's load and the recording transaction). */
class StallingPublisher extends AssignmentPublisher {
  stall: Promise<void> | undefined;
  entered: (() => void) | undefined;
  override async record(request: PublishRequest) {
    if (request.role === 'candidate' && this.stall) {
      const stall = this.stall;
      this.stall = undefined;
      this.entered?.();
      await stall;
    }
    return super.record(request);
  }
}

/** The fleet on a store of `engine` (embedded broker), iris 1 and 2 registered, two devices on iris 1; no device connected. */
async function world(t: TestContext, engine: StoreEngineName) {
  const base = await irisFleetWorld(t, engine, 'fence');
  if (!base) return undefined;
  const { store, registry, fleet, signingKey, log } = base;
  // A second port over the same store, as another server process has: its publisher can stall.
  const publisher = new StallingPublisher({ fleet: new FleetStore(store), broker: { publish: async () => {} } as unknown as Broker, serverUrl: () => 'http://127.0.0.1:9', log, signingKey: signingKey.privateKey, trustedKeys: await TrustedKeys.load([], signingKey.publicKey) });
  const stallingPort = new StoreFleetPort({ fleet: new FleetStore(store), registry, publisher, outcomes: new AssignmentOutcomes(), log });
  const scheduler = new ManualScheduler(Date.now());
  const repository = new StoreRolloutRepository(store.engine);
  const controller = (port: FleetPort) => {
    const c = new RolloutController({ repository, fleet: port, models: new RegistryModelStatus(store), providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }), scheduler, actionRetryMs: 1000, newId: () => 'ro-fence', startupGraceMs: 0 });
    t.after(() => c.stop());
    return c;
  };
  const retained = async () => Object.fromEntries(await Promise.all(['dev-1', 'dev-2'].map(async (id) => {
    const a = (await fleet.devices.get(id)).retainedAssignment;
    return [id, a ? `${a.role}:${a.version} (${a.id})` : 'none'] as const;
  })));
  return { fleet, publisher, stallingPort, controller, retained };
}

const SPEC = validateRolloutSpec({ model: 'iris', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] });

for (const engine of STORE_ENGINES) {
  test(`${engine}: a deposed leader's candidate recording that lands after the new leader's rollback records nothing (fenced by the rollout revision in its transaction)`, async (t) => {
    const w = await world(t, engine);
    if (!w) return;
    let release!: () => void;
    w.publisher.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (w.publisher.entered = resolve));
    const a = w.controller(w.stallingPort);
    await a.start(SPEC, { by: 'alice' });
    await entered; // leader A passed its guard's check and stalls before its recording transaction
    a.stop(); // deposed; B is elected and recovers
    const b = w.controller(w.fleet.fleetPort);
    await b.recover();
    await b.idle(); // B runs the same pending assignment itself
    const cohort = (await b.status('ro-fence')).cohort;
    assert.equal(cohort.length, 1, 'a 50% step of two devices takes one');
    assert.match((await w.retained())[cohort[0]!]!, /^candidate:2 /, 'B recorded the candidate for the cohort');
    assert.equal((await b.rollback('ro-fence', 'bob', 'bad candidate')).phase, 'RolledBack');
    await b.idle();
    const afterRollback = await w.retained();
    assert.match(afterRollback[cohort[0]!]!, /^active:1 /, 'the rollback retained the baseline');
    release(); // A wakes up and records its stale decision
    await a.idle();
    assert.deepEqual(await w.retained(), afterRollback, 'the deposed leader\'s late recording changed no retained assignment (the candidate did not come back)');
    const state = await b.status('ro-fence');
    assert.equal(state.phase, 'RolledBack');
    assert.deepEqual(state.devices.filter((d) => d.touched).map((d) => d.desired), ['baseline'], 'the rollout says its device is back on its baseline, as the table does');
  });

  test(`${engine}: a controller stopped while its action waits in the guard records nothing`, async (t) => {
    const w = await world(t, engine);
    if (!w) return;
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inGuard = new Promise<void>((resolve) => (entered = resolve));
    const port = w.stallingPort;
    // Stalls inside the guard (its check of the devices' retained assignments), before it records.
    const stalling: FleetPort = {
      listDevices: (model) => port.listDevices(model),
      assign: (command) => port.assign(command),
      revert: (command) => port.revert(command),
      retainedAssignments: async (ids) => {
        entered();
        await stalled;
        return port.retainedAssignments(ids);
      },
    };
    const before = await w.retained();
    const a = w.controller(stalling);
    await a.start(SPEC, { by: 'alice' });
    await inGuard;
    a.stop(); // shut down or deposed, nobody has committed since
    release();
    await a.idle();
    assert.deepEqual(await w.retained(), before, 'the stopped controller recorded no candidate');
  });
}
