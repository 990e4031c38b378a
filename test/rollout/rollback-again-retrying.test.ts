import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';

/**
 * "Rollback again" re-sends the baseline to devices whose revert failed and waits out its backoff
 * timer; not to devices whose revert is being retried right now (its timer fired: on its way).
 */
describe('rollback again while a failed revert is retried', () => {
  it('refuses while the retried revert is in flight (on its way), and sends nothing twice', async () => {
    const scheduler = new ManualScheduler(T0);
    const repository = new InMemoryRolloutRepository();
    const devices = fleetOf(10);
    const fleet = new InMemoryFleet(devices);
    const controller = new RolloutController({ repository, fleet, models: new InMemoryModelStatus('1'), providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics: new RolloutMetrics(new Registry()), actionRetryMs: 1000, newId: () => 'ro-test' });
    const drive = async (ms: number) => {
      for (let elapsed = 0; elapsed < ms; elapsed += 1000) {
        await scheduler.advance(1000);
        await controller.idle();
      }
    };
    try {
      await controller.start(specOf([{ setWeight: 30 }, { pause: {} }, { setWeight: 100 }]), { by: 'alice' });
      await drive(2000);
      fleet.alive = false;
      await controller.rollback('ro-test', 'bob');
      await controller.idle(); // the revert fails; retried in 1 s
      const reverts = async () => (await repository.load('ro-test'))!.pendingActions.filter((action) => action.kind === 'revert').map((action) => action.id);
      const [revert] = await reverts();
      assert.ok(revert, 'the revert is pending');

      // The broker is back; the retry starts when its timer fires and is held on its way.
      fleet.alive = true;
      let release!: () => void;
      fleet.revertsHeld = new Promise<void>((resolve) => (release = resolve));
      await scheduler.advance(1000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const decisionsBefore = (await controller.decisions('ro-test')).length;
      const revisionBefore = (await repository.load('ro-test'))!.revision;

      await assert.rejects(controller.rollback('ro-test', 'carol'), (error: unknown) => {
        assert.equal((error as Error).name, 'RolloutCommandError', `refused as a command error: ${String(error)}`);
        assert.match((error as Error).message, /^rollout ro-test is already rolled back: its revert is on its way to 3 devices \(.+\); nothing to send again$/);
        return true;
      });
      assert.deepEqual(await reverts(), [revert], 'no second revert decided');
      assert.equal((await repository.load('ro-test'))!.revision, revisionBefore, 'nothing committed');
      assert.equal((await controller.decisions('ro-test')).length, decisionsBefore, 'nothing logged');

      const callsBefore = fleet.calls.length;
      release();
      await drive(3000);
      assert.deepEqual(await reverts(), [], 'the retried revert went through');
      assert.deepEqual(fleet.calls.slice(callsBefore), [revert], 'the held revert reached the fleet, and nothing was sent after it');
      for (const device of devices) assert.equal(fleet.devices.get(device.id)!.active, device.baseline, `${device.id} is back on its baseline`);
    } finally {
      controller.stop();
    }
  });
});
