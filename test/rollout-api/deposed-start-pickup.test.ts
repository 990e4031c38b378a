import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { HTTP_STATUS, ServiceError } from '../../server/app/service-error.ts';
import type { Principal } from '../../server/auth/principal.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { FleetPort } from '../../server/rollout/fleet-port.ts';
import { FleetReadiness } from '../../server/rollout/fleet-readiness.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { Store } from '../../server/store/store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { T0 } from '../rollout/rollout-fixtures.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';
import { registerVersion, testDevices } from './helpers/rollout-fixtures.ts';

/**
 * A leader deposed while its start's insert commits (its lock session dropped, and the new leader
 * recovered before the insert landed) stored a rollout the new leader's recover() did not see. The
 * start answers 503 saying so, and the new leader's periodic look for unfinished rollouts nobody
 * drives picks it up (its pending assignment goes out, its timers run): it neither runs nowhere nor
 * blocks every later start of its model with a 409. A rollout is never picked up twice.
 */

const ADMIN = { tokenId: 'admin', role: 'admin', label: 'admin' } as unknown as Principal;
const pausingSpec = (version: string) => parseRolloutSpec(`{model: wine, candidateVersion: "${version}", steps: [{setWeight: 50}, {pause: {}}]}`, 'spec');

async function wineRegistry(store: Store): Promise<void> {
  for (const version of ['1', '2', '3']) await registerVersion(store, 'wine', version);
  await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
}

function controllerOn(repository: StoreRolloutRepository, fleet: FleetPort, options: { scheduler?: ManualScheduler; logged?: Record<string, unknown>[] } = {}): RolloutController {
  const logged = options.logged;
  return new RolloutController({
    repository,
    fleet,
    models: new InMemoryModelStatus('1'),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler: options.scheduler ?? new ManualScheduler(T0),
    adoptEveryMs: 1000,
    nodeId: 'node-b',
    ...(logged ? { logger: pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) }) } : {}),
  });
}

function serviceOn(store: Store, controller: RolloutController, extra: Partial<RolloutServiceOptions> = {}): RolloutService {
  return new RolloutService({ store, repository: new StoreRolloutRepository(store.engine), controller: () => controller, ...extra } as unknown as RolloutServiceOptions);
}

for (const engine of STORE_ENGINES) {
  describe(`a start on a deposed leader (${engine})`, () => {
    test("deposed while its insert commits, after the new leader recovered: the start answers 503 'stored, the leader picks it up', and the new leader's periodic look picks it up, once", async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        // Old leader A: its insert waits until released.
        const slow = new StoreRolloutRepository(store.engine);
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let entered!: () => void;
        const inCreate = new Promise<void>((resolve) => (entered = resolve));
        const create = slow.create.bind(slow);
        slow.create = async (record) => {
          entered();
          await gate;
          return create(record);
        };
        const fleetA = new InMemoryFleet(testDevices(2));
        const a = controllerOn(slow, fleetA);
        const starting = serviceOn(store, a).start(pausingSpec('2'), ADMIN);
        starting.catch(() => {}); // awaited below
        await inCreate;
        a.stop(); // deposed while its insert runs

        // New leader B recovers before A's insert commits, and looks once more (nothing to pick up yet).
        const repository = new StoreRolloutRepository(store.engine);
        const fleetB = new InMemoryFleet(testDevices(2));
        const scheduler = new ManualScheduler(T0);
        const logged: Record<string, unknown>[] = [];
        const b = controllerOn(repository, fleetB, { scheduler, logged });
        const advance = async (ms: number) => {
          for (let elapsed = 0; elapsed < ms; elapsed += 500) {
            await scheduler.advance(500);
            await b.idle();
          }
        };
        try {
          assert.deepEqual(await b.recover(), [], 'B recovered before the insert committed');
          await advance(1000);

          release();
          let id = '';
          await assert.rejects(starting, (error: unknown) => {
            assert.ok(error instanceof ServiceError, `a ServiceError: ${String(error)}`);
            assert.equal(error.code, 'unavailable', 'a 503 unavailable');
            assert.equal(HTTP_STATUS[error.code], 503, 'HTTP 503');
            const stored = /the rollout (ro-[0-9a-f]+) was stored/.exec(error.message)?.[1];
            assert.ok(stored, `the message names the stored rollout: ${error.message}`);
            id = stored;
            assert.equal(
              error.message,
              `this server stopped driving rollouts (it no longer holds the rollout leadership); the rollout ${id} was stored all the same, and the rollout leader will pick it up shortly; do not start it again`,
              'the message says it was stored and the leader picks it up (no "retry shortly": a retry would be refused)',
            );
            assert.equal((error.cause as Error | undefined)?.name, 'RolloutControllerStoppedError', 'caused by the stopped controller');
            return true;
          });
          assert.deepEqual(await repository.list({ unfinished: true }), [id], 'the rollout was stored');
          const assign = (await repository.load(id))!.pendingActions.filter((action) => action.kind === 'assign').map((action) => action.id);
          assert.equal(assign.length, 1, 'stored with its assignment pending');
          assert.deepEqual(fleetA.calls, [], 'the deposed leader sent nothing');
          assert.deepEqual(fleetB.calls, [], 'nothing sent before the next look');
          const audited = (await store.audit.list()).filter((entry) => entry.action === 'rollout.start');
          assert.deepEqual(audited.map((entry) => entry.target), [`rollout:${id}`], 'the stored start is audited');

          // B's next look picks it up: its assignment goes out and the rollout runs on to its pause.
          await advance(1000);
          assert.deepEqual(fleetB.calls, assign, `the new leader sent the pending assignment: ${fleetB.calls.join(', ')}`);
          const picked = (await repository.load(id))!;
          assert.deepEqual([picked.state.phase, picked.pendingActions.map((action) => action.kind)], ['Paused', []], 'driven to its pause step, nothing left pending');
          const pickups = () => logged.filter((line) => line.rollout === id && String(line.msg).startsWith('picking up an unfinished rollout nobody drives'));
          assert.equal(pickups().length, 1, `one pick-up logged: ${JSON.stringify(logged.map((line) => line.msg))}`);
          assert.equal(pickups()[0]!.level, 30, 'logged at info');
          const takeovers = (await repository.decisions(id)).filter((entry) => entry.kind === 'takeover');
          assert.deepEqual(
            takeovers.map((entry) => [entry.verdict, entry.message]),
            [['driven', 'server node node-b picked up the rollout in phase Progressing: no server drove it (the server that started it stopped leading while it stored it)']],
            'its decision log says which server drives it now',
          );

          // Commands work on it, and a start of the model is refused only while it is under way.
          const service = serviceOn(store, b);
          await assert.rejects(service.start(pausingSpec('3'), ADMIN), (error: unknown) => {
            assert.ok(error instanceof ServiceError && error.code === 'conflict', `a 409 while it runs: ${String(error)}`);
            return true;
          });
          await service.command(id, 'abort', ADMIN);
          await advance(2000);
          const next = await service.start(pausingSpec('3'), ADMIN);
          await advance(5000);

          // Looked at every second since: neither rollout was picked up (driven) twice.
          assert.equal(pickups().length, 1, 'the adopted rollout is picked up once');
          assert.equal(logged.filter((line) => line.rollout === next.state.id && String(line.msg).startsWith('picking up')).length, 0, "B's own start is never picked up as undriven");
          assert.equal(new Set(fleetB.calls).size, fleetB.calls.length, `no action sent twice: ${fleetB.calls.join(', ')}`);
          assert.equal((await repository.load(next.state.id))!.state.phase, 'Paused', 'the new rollout runs to its pause');
        } finally {
          b.stop();
          await b.idle();
        }
      });
    });

    test('a start while the leader waits for its broker connection: its decision log says the devices are sent what it decides once it connects', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        await wineRegistry(store);
        const repository = new StoreRolloutRepository(store.engine);
        const readiness = new FleetReadiness();
        const fleet = new InMemoryFleet(testDevices(2));
        const leader = controllerOn(repository, readiness.wrap(fleet));
        try {
          const started = await serviceOn(store, leader, { fleetWaiting: () => !readiness.ready }).start(pausingSpec('2'), ADMIN);
          const id = started.state.id;
          const notes = (await repository.decisions(id)).filter((decision) => decision.verdict === 'waiting-for-broker');
          assert.equal(notes.length, 1, `one waiting-for-broker entry: ${(await repository.decisions(id)).map((d) => `${d.kind}/${d.verdict}`).join(', ')}`);
          assert.equal(notes[0]!.kind, 'command');
          assert.match(notes[0]!.message, /not connected to the external broker \(not yet, or it dropped\): the decision is recorded, and the devices are sent what this decides once it connects/);
          assert.equal(started.revision, (await repository.load(id))!.revision, 'the start answers with the state that has the note');
          assert.deepEqual(fleet.calls, [], 'nothing sent before the broker connects');
          const assign = (await repository.load(id))!.pendingActions.filter((action) => action.kind === 'assign').map((action) => action.id);
          assert.equal(assign.length, 1, 'its assignment waits for the broker');
          readiness.open();
          await leader.idle();
          assert.deepEqual(fleet.calls, assign, 'the assignment goes out once it connects');

          // Connected: a start writes no such note.
          await serviceOn(store, leader).command(id, 'abort', ADMIN);
          await leader.idle();
          const next = await serviceOn(store, leader, { fleetWaiting: () => !readiness.ready }).start(pausingSpec('3'), ADMIN);
          assert.deepEqual((await repository.decisions(next.state.id)).filter((decision) => decision.verdict === 'waiting-for-broker'), [], 'no note once connected');
        } finally {
          readiness.close(new Error('the test is over')); // an assignment still waiting fails (a no-op once connected)
          leader.stop();
          await leader.idle();
        }
      });
    });
  });
}
