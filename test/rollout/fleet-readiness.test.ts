import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeliveryResult, FleetPort } from '../../server/rollout/fleet-port.ts';
import { FleetReadiness } from '../../server/rollout/fleet-readiness.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

/** InMemoryFleet behind the record guard, as StoreFleetPort is: a command changes only the devices the guard still gives it. */
function guarded(fleet: InMemoryFleet): FleetPort {
  const superseded = (ids: readonly string[], results: readonly DeliveryResult[]) => ids.map((deviceId) => results.find((r) => r.deviceId === deviceId) ?? { deviceId, outcome: 'refused' as const, reason: 'superseded' });
  return {
    listDevices: () => fleet.listDevices(),
    assign: async (command) => {
      let owned: readonly string[] = command.deviceIds;
      if (command.guard) await command.guard(async (ids) => void (owned = ids));
      return superseded(command.deviceIds, owned.length > 0 ? await fleet.assign({ ...command, deviceIds: owned }) : []);
    },
    revert: async (command) => {
      let owned: readonly string[] = command.devices.map((d) => d.deviceId);
      if (command.guard) await command.guard(async (ids) => void (owned = ids));
      const devices = command.devices.filter((d) => owned.includes(d.deviceId));
      return superseded(command.devices.map((d) => d.deviceId), devices.length > 0 ? await fleet.revert({ ...command, devices }) : []);
    },
  };
}

test('a leader whose broker is not connected yet: a timed pause that fell due meanwhile moves on, its assignment waits; a rollback then wins, and the candidate never reaches a device', async () => {
  const repository = new InMemoryRolloutRepository();
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(10));
  const baseline = new Map(fleetOf(10).map((d) => [d.id, d.baseline]));
  const models = new InMemoryModelStatus('1');
  const controller = (port: FleetPort) => new RolloutController({ repository, fleet: port, models, providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, actionRetryMs: 1000, newId: () => 'ro-wait', startupGraceMs: 0 });
  const drive = async (c: RolloutController, ms: number) => {
    for (let elapsed = 0; elapsed < ms; elapsed += 1000) {
      await scheduler.advance(1000);
      await c.idle();
    }
  };
  const a = controller(guarded(fleet));
  await a.start(specOf([{ setWeight: 10 }, { pause: { duration: '10m' } }, { setWeight: 100 }]), { by: 'alice' });
  await drive(a, 3000);
  const cohort = (await a.status('ro-wait')).cohort;
  assert.equal(cohort.length, 1, 'the first step gave one device the candidate');
  a.stop();
  await scheduler.advance(15 * 60_000); // restarted during a broker outage; the timed pause falls due meanwhile

  const readiness = new FleetReadiness();
  const b = controller(readiness.wrap(guarded(fleet)));
  await b.recover();
  await scheduler.advance(1000); // the pause's timer, due since, fires now
  const moved = await b.status('ro-wait');
  assert.equal(moved.stepIndex, 2, 'the expired pause moved the rollout to its 100% step');
  const callsBefore = fleet.calls.length;
  const rolledBack = await b.rollback('ro-wait', 'bob', 'bad candidate');
  assert.equal(rolledBack.phase, 'RolledBack', 'the rollback is decided while the broker is not connected');
  assert.equal(fleet.calls.length, callsBefore, 'nothing went to the devices before the broker connection');
  assert.equal([...fleet.devices.values()].filter((d) => d.effects.includes('active:2')).length, 0, 'no device activated the candidate');

  readiness.open(); // the broker connection is made
  await drive(b, 5000);
  const devices = [...fleet.devices.values()];
  assert.deepEqual(devices.filter((d) => d.active !== baseline.get(d.id) || d.candidate !== null).map((d) => `${d.id}:${d.active}/${d.candidate}`), [], 'every device ends on its baseline');
  assert.deepEqual(devices.filter((d) => d.effects.some((e) => e.endsWith(':2') && e !== 'candidate:2')).map((d) => `${d.id}:${d.effects.join(',')}`), [], 'the 100% step decided during the outage activated the candidate nowhere');
  assert.deepEqual(fleet.devices.get(cohort[0]!)!.effects, ['candidate:2', `revert:${baseline.get(cohort[0]!)}`], 'the cohort device got the candidate before the restart and its revert after the broker connected');
  const final = await b.status('ro-wait');
  assert.equal(final.phase, 'RolledBack');
  b.stop();
});

test('a leader deposed before its broker connection was made: the commands that waited send nothing', async () => {
  const readiness = new FleetReadiness();
  const fleet = new InMemoryFleet(fleetOf(2));
  const port = readiness.wrap(fleet);
  const pending = port.assign({ commandId: 'c-1', model: 'iris', version: '2', role: 'candidate', deviceIds: ['dev-01'] });
  readiness.close(new Error('deposed'));
  await assert.rejects(pending, /deposed/);
  readiness.open(); // too late: a closed readiness stays closed
  assert.equal(readiness.ready, false, 'a closed readiness is never ready');
  assert.deepEqual(fleet.calls, [], 'nothing was sent');
});

test('a broker connection that drops after it was made holds the device commands again until it is back, said once; closed meanwhile, they fail sending nothing', async () => {
  let connected = true;
  let waits = 0;
  const readiness = new FleetReadiness(() => connected, () => waits++);
  const sent: string[] = [];
  const port: FleetPort = {
    listDevices: async () => [],
    assign: async (command) => (sent.push(`assign ${command.deviceIds.join(',')}`), command.deviceIds.map((deviceId) => ({ deviceId, outcome: 'delivered' as const }))),
    revert: async (command) => (sent.push(`revert ${command.devices.map((d) => d.deviceId).join(',')}`), []),
  };
  const wrapped = readiness.wrap(port);
  readiness.open();
  const command = (id: string) => ({ commandId: id, deviceIds: ['d1'], model: 'm', version: '2', role: 'candidate' as const });
  await wrapped.assign(command('a1'));
  assert.deepEqual(sent, ['assign d1']);

  connected = false; // the broker restarts
  let done = false;
  const held = wrapped.assign(command('a2')).then(() => (done = true));
  const second = wrapped.assign(command('a3'));
  await new Promise((resolve) => setTimeout(resolve, 1200));
  assert.deepEqual([sent, done, waits], [['assign d1'], false, 1], 'nothing sent while the connection is down; said once');
  connected = true;
  await held;
  await second;
  assert.deepEqual(sent, ['assign d1', 'assign d1', 'assign d1']);

  connected = false;
  const failing = wrapped.assign(command('a4'));
  readiness.close(new Error('deposed'));
  await assert.rejects(failing, /deposed/);
  assert.equal(sent.length, 3, 'closed while waiting: nothing sent');
});

test('reachable: false before the connection is made, true while it is up, false again while a made connection is down (a rollback decided then says it waits), false once closed', () => {
  let connected = false;
  const readiness = new FleetReadiness(() => connected);
  assert.equal(readiness.reachable, false, 'not made yet');
  connected = true;
  assert.equal(readiness.reachable, false, 'up, but not opened');
  readiness.open();
  assert.deepEqual([readiness.ready, readiness.reachable], [true, true]);
  connected = false;
  assert.deepEqual([readiness.ready, readiness.reachable], [true, false], 'dropped mid-run');
  connected = true;
  assert.equal(readiness.reachable, true);
  readiness.close(new Error('deposed'));
  assert.equal(readiness.reachable, false);
});
