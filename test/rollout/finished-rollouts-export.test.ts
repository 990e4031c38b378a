import { it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { EXPORTED_FINISHED_ROLLOUTS, RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import type { RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import { openStore } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import { isTerminal } from '../../server/rollout/rollout-state-machine.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';

/*
 * Which finished rollouts a server exports (the last 20 by their last change) must not depend on
 * whether it restarted: live and restored alike, whatever order their changes came in.
 */

const exportedRollouts = async (registry: Registry) => [...new Set((await registry.metrics()).split('\n').map((line) => /rollout="([^"]+)"/.exec(line)?.[1]).filter((id): id is string => id !== undefined))].sort();
const decisionLines = async (registry: Registry, id: string) => (await registry.metrics()).split('\n').filter((l) => l.startsWith('fleetprune_rollout_decisions_total{') && l.includes(`rollout="${id}"`)).sort();

function world(repository: RolloutRepository = new InMemoryRolloutRepository()) {
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(4));
  const models = new InMemoryModelStatus('1');
  const make = (registry: Registry) => new RolloutController({ repository, fleet, models, providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics: new RolloutMetrics(registry), actionRetryMs: 1000 });
  const settle = async (c: RolloutController, id: string, idle = true) => {
    const turn = async () => { await scheduler.advance(1000); await (idle ? c.idle() : new Promise((r) => setTimeout(r, 2))); };
    for (let i = 0; i < 300 && !isTerminal(await c.status(id)); i++) await turn();
    for (let i = 0; i < 5; i++) await turn();
    assert.ok(isTerminal(await c.status(id)), `${id} finished`);
  };
  const finish = async (c: RolloutController, id: string, n: number, idle = true) => {
    await c.start(specOf([{ setWeight: 100 }], { candidateVersion: String(n + 2), model: `m${n}` }), { by: 'alice', id });
    await settle(c, id, idle);
  };
  return { repository, scheduler, fleet, models, make, settle, finish };
}

/** What a restarted controller on the same store exports: the rollouts, and the given one's decision counters. */
async function afterRestart(w: ReturnType<typeof world>, id?: string): Promise<{ rollouts: string[]; decisions: string[] }> {
  const registry = new Registry();
  const restarted = w.make(registry);
  await restarted.recover();
  restarted.stop();
  return { rollouts: await exportedRollouts(registry), decisions: id ? await decisionLines(registry, id) : [] };
}

/**
 * ro-x finishes and is rolled back with its revert held (terminal, still unfinished), then 20
 * newer rollouts finish; returns what releases the revert.
 */
async function rolledBackBeforeTwentyMore(w: ReturnType<typeof world>, c: RolloutController): Promise<() => void> {
  await w.finish(c, 'ro-x', 0);
  let release!: () => void;
  w.fleet.revertsHeld = new Promise<void>((resolve) => (release = resolve));
  await w.scheduler.advance(1000);
  await c.rollback('ro-x', 'bob', 'regression');
  for (let n = 1; n <= EXPORTED_FINISHED_ROLLOUTS; n++) await w.finish(c, `ro-${String(n).padStart(2, '0')}`, n, false);
  return release;
}

/** A fresh world on the in-memory repository or on SQLite. */
async function worldOn(t: TestContext, engine: 'memory' | 'sqlite'): Promise<ReturnType<typeof world>> {
  if (engine === 'memory') return world();
  const store = await openStore((await freshStoreLocation(t, 'sqlite'))!);
  t.after(() => store.close());
  return world(new StoreRolloutRepository(store.engine));
}

for (const engine of ['memory', 'sqlite'] as const) {
  it(`A: a rolled-back rollout whose revert is still pending when 20 newer rollouts finished: a restart exports what live exports (${engine})`, async (t) => {
    const w = await worldOn(t, engine);
    const registry = new Registry();
    const c = w.make(registry);
    const release = await rolledBackBeforeTwentyMore(w, c);
    c.stop();
    const live = await exportedRollouts(registry);
    const { rollouts } = await afterRestart(w);
    release();
    assert.deepEqual(rollouts, live);
  });

  it(`C: equal updatedAt: live and a restart keep the same one of the tied pair (${engine})`, async (t) => {
    const w = await worldOn(t, engine);
    const registry = new Registry();
    const c = w.make(registry);
    await w.finish(c, 'ro-a', 0); // created first (lower ord)
    await w.finish(c, 'ro-b', 1);
    let release!: () => void;
    w.fleet.revertsHeld = new Promise<void>((resolve) => (release = resolve));
    await w.scheduler.advance(1000);
    // The same scheduler time: equal updatedAt; B committed first, A last.
    await c.rollback('ro-b', 'bob', 'regression');
    await c.rollback('ro-a', 'bob', 'regression');
    release();
    w.fleet.revertsHeld = undefined;
    await c.idle();
    assert.equal((await c.status('ro-a')).updatedAt, (await c.status('ro-b')).updatedAt, 'tied');
    for (let n = 1; n < EXPORTED_FINISHED_ROLLOUTS; n++) await w.finish(c, `ro-${String(n).padStart(2, '0')}`, n + 1);
    c.stop();
    const live = await exportedRollouts(registry);
    assert.deepEqual((await afterRestart(w)).rollouts, live);
  });
}

it('B: an evicted rollout changed again (its revert answered after eviction) comes back from its whole log, as a restart shows it', async () => {
  const w = world();
  const registry = new Registry();
  const c = w.make(registry);
  const release = await rolledBackBeforeTwentyMore(w, c);
  release();
  w.fleet.revertsHeld = undefined;
  await c.idle();
  c.stop();
  const restart = await afterRestart(w, 'ro-x');
  assert.deepEqual(restart.rollouts, await exportedRollouts(registry));
  assert.deepEqual(restart.decisions, await decisionLines(registry, 'ro-x'));
});

it('D: an evicted finished rollout rolled back later is exported from its whole log, live as after a restart', async () => {
  const w = world();
  const registry = new Registry();
  const c = w.make(registry);
  for (let n = 1; n <= EXPORTED_FINISHED_ROLLOUTS + 1; n++) await w.finish(c, `ro-${String(n).padStart(2, '0')}`, n);
  assert.ok(!(await exportedRollouts(registry)).includes('ro-01'), 'ro-01 evicted live');
  await w.scheduler.advance(1000);
  await c.rollback('ro-01', 'bob', 'regression');
  await w.settle(c, 'ro-01');
  c.stop();
  const restart = await afterRestart(w, 'ro-01');
  assert.deepEqual(restart.rollouts, await exportedRollouts(registry), 'same rollouts');
  assert.deepEqual(restart.decisions, await decisionLines(registry, 'ro-01'), 'same ro-01 decision counters');
});
