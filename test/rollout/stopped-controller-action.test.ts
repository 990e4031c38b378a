import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import { isTerminal } from '../../server/rollout/rollout-state-machine.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';

/**
 * A server stopping while a revert waits for the broker connection (a rollback decided during a
 * broker outage, then a clean stop): the revert fails, as it must send nothing, but it stays
 * pending for the next server to run. That is no failure to alert on: it was logged at error
 * level with a stack, as a revert that failed.
 */
test('an action failing because its controller stopped meanwhile is logged at info as left pending, not as a failed action at error level', async () => {
  const logged: { level: number; msg: string; err?: unknown }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
  const scheduler = new ManualScheduler(T0);
  const repository = new InMemoryRolloutRepository();
  const fleet = new InMemoryFleet(fleetOf(4));
  const controller = new RolloutController({ repository, fleet, models: new InMemoryModelStatus('1'), providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics: new RolloutMetrics(new Registry()), logger, actionRetryMs: 1000 });
  await controller.start(specOf([{ setWeight: 100 }]), { by: 'alice', id: 'ro-stop' });
  for (let i = 0; i < 60 && !isTerminal(await controller.status('ro-stop')); i++) {
    await scheduler.advance(1000);
    await controller.idle();
  }
  assert.ok(isTerminal(await controller.status('ro-stop')), 'promoted');

  // The revert waits (the broker connection not made); the server stops; the wait fails.
  let fail!: (error: Error) => void;
  fleet.revertsHeld = new Promise<void>((_, reject) => (fail = reject));
  await controller.rollback('ro-stop', 'bob', 'regression');
  await scheduler.advance(1000);
  controller.stop();
  fail(new Error('the server is stopping before the broker connection was made: the device commands were not sent'));
  await controller.idle();

  const about = logged.filter((line) => /\(revert\)/.test(line.msg));
  assert.deepEqual(
    about.map((line) => [line.level, line.msg, line.err === undefined]),
    [[30, `action ${about[0]?.msg.match(/action (\S+)/)?.[1]} (revert) left pending for whoever drives the rollout next: the server is stopping before the broker connection was made: the device commands were not sent`, true]],
  );
  assert.deepEqual(logged.filter((line) => line.level >= 50), [], 'nothing at error level');
});
