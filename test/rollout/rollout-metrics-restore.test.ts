import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { EXPORTED_FINISHED_ROLLOUTS, RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import type { RolloutListFilter, RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import { isTerminal } from '../../server/rollout/rollout-state-machine.ts';
import { openStore } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import type { DecisionLogEntry } from '../../server/rollout/rollout-state.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';

/*
 * A controller that starts (a restart, or a new leader) exports each rollout's series again from
 * its decision log, while operators and devices may already reach it: every decision counts once.
 */

/** decisions() waits on a gate while `gated`, telling `hit` it was reached. */
class GatedRepository extends InMemoryRolloutRepository {
  gated = false;
  #release: (() => void) | undefined;
  #hit: (() => void) | undefined;
  hit = new Promise<void>((resolve) => (this.#hit = resolve));
  release(): void { this.gated = false; this.#release?.(); }
  override async decisions(id: string, options: { afterId?: string; limit?: number } = {}): Promise<readonly DecisionLogEntry[]> {
    if (this.gated) {
      const wait = new Promise<void>((resolve) => (this.#release = resolve));
      this.#hit?.();
      await wait;
    }
    return super.decisions(id, options);
  }
}

function controllerOn(repository: InMemoryRolloutRepository, scheduler: ManualScheduler, fleet: InMemoryFleet, models: InMemoryModelStatus, metrics: RolloutMetrics) {
  return new RolloutController({ repository, fleet, models, providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics, actionRetryMs: 1000, newId: () => 'ro-x' });
}

async function setup() {
  const repository = new GatedRepository();
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(20));
  const models = new InMemoryModelStatus('1');
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const first = controllerOn(repository, scheduler, fleet, models, metrics);
  await first.start(specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 100 }], { candidateVersion: '3' }), { by: 'alice', id: 'ro-open' });
  for (let i = 0; i < 60 && (await first.status('ro-open')).phase !== 'Paused'; i++) { await scheduler.advance(1000); await first.idle(); }
  assert.equal((await first.status('ro-open')).phase, 'Paused', 'paused');
  first.stop();
  return { repository, scheduler, fleet, models };
}

const lines = async (registry: Registry) => (await registry.metrics()).split('\n').filter((l) => l.startsWith('fleetprune_rollout_decisions_total{')).sort();

/** The decisions counters as the decision log says they should be. */
async function expected(repository: InMemoryRolloutRepository, id: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const d of await repository.decisions(id)) {
    const key = `kind="${d.kind}",metric="${d.measurement?.metric ?? ''}",verdict="${d.verdict}"`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** The exported decision counters, as `kind=…,metric=…,verdict=…` → count. */
async function exported(registry: Registry): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const line of await lines(registry)) {
    const match = /(kind="[^"]*",metric="[^"]*",verdict="[^"]*")\} (\d+)$/.exec(line);
    if (match && Number(match[2]) > 0) counts.set(match[1]!, Number(match[2]));
  }
  return counts;
}

it('an operator command while recover() restores the series is counted once: the restored counters equal the decision log', async () => {
  const { repository, scheduler, fleet, models } = await setup();
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const second = controllerOn(repository, scheduler, fleet, models, metrics);
  repository.gated = true;
  const recovering = second.recover();
  await repository.hit;
  // The module hands the controller to the API before recover() is done: an operator's resume comes in meanwhile.
  const resuming = second.resume('ro-open', 'bob');
  // Time for the resume to be committed, had nothing held it back, before the restore reads the log.
  await new Promise((resolve) => setTimeout(resolve, 100));
  repository.release();
  await Promise.all([recovering, resuming]);
  await second.idle();
  second.stop();
  const want = await expected(repository, 'ro-open');
  assert.ok([...want.keys()].some((key) => key.includes('verdict="resumed"')), 'the resume is in the log');
  assert.deepEqual(await exported(registry), want);
});

it('deposed while recover() restores: the stopped controller exports nothing, and a re-election exports the log\'s counts, not double', async () => {
  const { repository, scheduler, fleet, models } = await setup();
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry); // one per server, shared across elections (rollout-module.ts)
  const second = controllerOn(repository, scheduler, fleet, models, metrics);
  repository.gated = true;
  const recovering = second.recover();
  await repository.hit;
  // deposed(): controller.stop(); metrics.reset()
  second.stop();
  metrics.reset();
  repository.release();
  await recovering;
  const afterDeposed = await lines(registry);
  // elected again
  const third = controllerOn(repository, scheduler, fleet, models, metrics);
  await third.recover();
  await third.idle();
  third.stop();
  assert.deepEqual(afterDeposed, [], 'a deposed server exports no rollout series');
  assert.deepEqual(await exported(registry), await expected(repository, 'ro-open'), 'after the re-election, each decision counted once');
});

/** The rollouts a server exports series for. */
const exportedRollouts = async (registry: Registry) => [...new Set((await registry.metrics()).split('\n').map((line) => /rollout="([^"]+)"/.exec(line)?.[1]).filter((id): id is string => id !== undefined))].sort();

/**
 * Twenty rollouts finish, the oldest is rolled back (changed again), then, with or without a
 * restart in between, one more finishes: which 20 finished ones are exported.
 */
async function finishedAfterRollback(repository: RolloutRepository, restart: boolean): Promise<string[]> {
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(4));
  const models = new InMemoryModelStatus('1');
  const controller = (metrics: RolloutMetrics) => new RolloutController({ repository, fleet, models, providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics, actionRetryMs: 1000 });
  const settle = async (c: RolloutController, id: string) => {
    for (let i = 0; i < 300 && !isTerminal(await c.status(id)); i++) {
      await scheduler.advance(1000);
      await c.idle();
    }
    assert.ok(isTerminal(await c.status(id)), `${id} finished`);
  };
  const finish = async (c: RolloutController, n: number, model = 'wine') => {
    const id = `ro-${String(n).padStart(2, '0')}`;
    await c.start(specOf([{ setWeight: 100 }], { candidateVersion: String(n + 1), model }), { by: 'alice', id });
    await settle(c, id);
  };
  let registry = new Registry();
  let c = controller(new RolloutMetrics(registry));
  await finish(c, 1, 'iris');
  for (let n = 2; n <= EXPORTED_FINISHED_ROLLOUTS; n++) await finish(c, n);
  await c.rollback('ro-01', 'bob', 'regression');
  await settle(c, 'ro-01');
  if (restart) {
    c.stop();
    registry = new Registry();
    c = controller(new RolloutMetrics(registry));
    await c.recover();
  }
  await finish(c, EXPORTED_FINISHED_ROLLOUTS + 1);
  c.stop();
  return exportedRollouts(registry);
}

for (const engine of ['memory', 'sqlite'] as const) {
  it(`the finished rollouts a restart exports are those live exports: the last changed (a rollback of an older one makes it the newest) (${engine})`, async (t) => {
    const repository = async () => {
      if (engine === 'memory') return new InMemoryRolloutRepository();
      const store = await openStore((await freshStoreLocation(t, 'sqlite'))!);
      t.after(() => store.close());
      return new StoreRolloutRepository(store.engine);
    };
    const live = await finishedAfterRollback(await repository(), false);
    assert.equal(live.length, EXPORTED_FINISHED_ROLLOUTS);
    assert.ok(live.includes('ro-01') && !live.includes('ro-02'), `the rolled-back ro-01 stays, ro-02 goes: ${live.join(' ')}`);
    assert.deepEqual(await finishedAfterRollback(await repository(), true), live);
  });
}

/** Runs `between` once, just before recover() reads the finished rollouts (it has read the unfinished ones). */
class HookedRepository extends InMemoryRolloutRepository {
  between: (() => Promise<void>) | undefined;
  override async list(filter: RolloutListFilter = {}): Promise<readonly string[]> {
    if (filter.finishedByLastChange && this.between) {
      const run = this.between;
      this.between = undefined;
      await run();
    }
    return super.list(filter);
  }
}

it('a finished rollout rolled back while recover() reads its two lists (in neither) is restored with its whole log', async () => {
  const repository = new HookedRepository();
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(4));
  const models = new InMemoryModelStatus('1');
  const first = controllerOn(repository, scheduler, fleet, models, new RolloutMetrics(new Registry()));
  await first.start(specOf([{ setWeight: 100 }], { candidateVersion: '2' }), { by: 'alice', id: 'ro-x' });
  for (let i = 0; i < 60 && !isTerminal(await first.status('ro-x')); i++) {
    await scheduler.advance(1000);
    await first.idle();
  }
  first.stop();
  const registry = new Registry();
  const second = controllerOn(repository, scheduler, fleet, models, new RolloutMetrics(registry));
  repository.between = async () => {
    await scheduler.advance(1000);
    await second.rollback('ro-x', 'bob', 'regression');
  };
  await second.recover();
  await second.idle();
  second.stop();
  assert.deepEqual(await exported(registry), await expected(repository, 'ro-x'));
});

it('a rollback whose revert answers after another rollout finished: live and a restart export the same finished rollouts', async () => {
  const repository = new InMemoryRolloutRepository();
  const scheduler = new ManualScheduler(T0);
  const fleet = new InMemoryFleet(fleetOf(4));
  const models = new InMemoryModelStatus('1');
  const registry = new Registry();
  const c = new RolloutController({ repository, fleet, models, providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[0.97]]) }), scheduler, metrics: new RolloutMetrics(registry), actionRetryMs: 1000 });
  // idle: false while a revert is held (idle() would wait for it).
  const settle = async (id: string, idle = true) => {
    const turn = async () => {
      await scheduler.advance(1000);
      await (idle ? c.idle() : new Promise((resolve) => setTimeout(resolve, 2)));
    };
    for (let i = 0; i < 300 && !isTerminal(await c.status(id)); i++) await turn();
    for (let i = 0; i < 5; i++) await turn();
    assert.ok(isTerminal(await c.status(id)), `${id} finished`);
  };
  const finish = async (n: number, idle = true) => {
    const id = `ro-${String(n).padStart(2, '0')}`;
    await c.start(specOf([{ setWeight: 100 }], { candidateVersion: String(n + 1), model: `m${n}` }), { by: 'alice', id });
    await settle(id, idle);
  };
  for (let n = 1; n < EXPORTED_FINISHED_ROLLOUTS; n++) await finish(n);
  let release!: () => void;
  fleet.revertsHeld = new Promise<void>((resolve) => (release = resolve));
  await scheduler.advance(1000);
  await c.rollback('ro-01', 'bob', 'regression'); // committed (RolledBack, revert pending); the revert waits
  await scheduler.advance(1000);
  await finish(EXPORTED_FINISHED_ROLLOUTS, false); // finishes after the rollback
  release();
  fleet.revertsHeld = undefined;
  await c.idle(); // the revert's result: a commit with no decision (updatedAt unchanged)
  for (let n = EXPORTED_FINISHED_ROLLOUTS + 1; n < 2 * EXPORTED_FINISHED_ROLLOUTS; n++) await finish(n);
  c.stop();
  const live = await exportedRollouts(registry);
  const restartRegistry = new Registry();
  const restarted = controllerOn(repository, scheduler, fleet, models, new RolloutMetrics(restartRegistry));
  await restarted.recover();
  await restarted.idle();
  restarted.stop();
  assert.deepEqual(await exportedRollouts(restartRegistry), live);
});

for (const engine of ['sqlite', 'postgres'] as const) {
  it(`a measurement of NaN or ±Infinity is stored as measured: a restart restores the rollout and its series, and its rollback works (${engine})`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    const repository = new StoreRolloutRepository(store.engine);
    const scheduler = new ManualScheduler(T0);
    const fleet = new InMemoryFleet(fleetOf(4));
    const models = new InMemoryModelStatus('1');
    // 0/0 on a fleet without traffic is NaN (deploy/examples/rollout.yaml); a rate over nothing can be +Inf.
    const providers = new MetricProviderResolver({ builtin: new ScriptedProvider([(query) => ({ resultType: 'vector', samples: [{ labels: {}, value: query === 'nan' ? Number.NaN : Number.POSITIVE_INFINITY }] })]) });
    const controller = (registry: Registry) => new RolloutController({ repository, fleet, models, providers, scheduler, metrics: new RolloutMetrics(registry), actionRetryMs: 1000 });
    const metric = (name: string, query: string) => ({ name, provider: { builtin: { query } }, successCondition: 'result[0] > 0.5' });
    const first = controller(new Registry());
    await first.start(specOf([{ setWeight: 25 }, { analysis: { metrics: [metric('requests', 'nan'), metric('latency', 'inf')] } }, { setWeight: 100 }]), { by: 'alice', id: 'ro-nan' });
    for (let i = 0; i < 120 && (await first.status('ro-nan')).phase !== 'Paused'; i++) { await scheduler.advance(1000); await first.idle(); }
    assert.equal((await first.status('ro-nan')).phase, 'Paused', 'the NaN measurement is inconclusive: paused');
    first.stop();

    const values = (await repository.decisions('ro-nan')).flatMap((decision) => (decision.measurement ? [[decision.measurement.metric, decision.measurement.value]] : []));
    assert.deepEqual(values, [['requests', [Number.NaN]], ['latency', [Number.POSITIVE_INFINITY]]], 'read back as measured, not as null');

    // A log stored by an earlier server holds null where NaN and +Inf were measured (JSON.stringify's way): restored as NaN.
    const legacy = JSON.parse(JSON.stringify(await repository.decisions('ro-nan'))) as DecisionLogEntry[];
    const legacyRegistry = new Registry();
    new RolloutMetrics(legacyRegistry).restore((await repository.load('ro-nan'))!.state, legacy);
    assert.match(await legacyRegistry.metrics(), /^fleetprune_analysis_value\{[^}]*metric="latency"[^}]*\} NaN$/im);

    // The restart: it threw "Value is not a valid number: null" from Gauge.set, and the server did not start.
    const registry = new Registry();
    const second = controller(registry);
    await second.recover();
    const text = await registry.metrics();
    // prom-client writes NaN as "Nan"; Prometheus reads it either way.
    assert.match(text, /^fleetprune_analysis_value\{[^}]*metric="requests"[^}]*\} NaN$/im);
    assert.match(text, /^fleetprune_analysis_value\{[^}]*metric="latency"[^}]*\} \+Inf$/m);
    await second.rollback('ro-nan', 'bob', 'no traffic to judge by');
    for (let i = 0; i < 120 && (await second.status('ro-nan')).phase !== 'RolledBack'; i++) { await scheduler.advance(1000); await second.idle(); }
    assert.equal((await second.status('ro-nan')).phase, 'RolledBack');
    second.stop();
  });
}
