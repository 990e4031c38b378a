import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import type { QueryContext, QueryResult } from '../../server/metricproviders/metric-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import type { RolloutState } from '../../server/rollout/rollout-state.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from './in-memory-fleet.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

/**
 * The start-up grace (docs/deployment.md, --analysis-startup-grace): a server that restarts in
 * the middle of a `prometheus` analysis must not take the measurement that falls due right after
 * it starts before Prometheus has scraped the new process (its answer is empty: Inconclusive,
 * a pause for a human). The review's repro: interval 15s, count 2, a restart of ~12 s right after
 * the first measurement, Prometheus scraping every 10 s.
 */

const RESTART_MS = 12_000;
/** Prometheus first scrapes the new process this long after it started. */
const FIRST_SCRAPE_MS = 10_000;

const promMetric = {
  name: 'accuracy-vs-baseline',
  interval: '15s',
  count: 2,
  provider: { prometheus: { query: 'avg(fleetprune_device_accuracy_ratio{role="candidate",device=~"{{args.cohort}}"})' } },
  successCondition: 'result[0] >= 0.9',
};

/** A Prometheus that has no sample of the server's series between `gapFrom` and `gapUntil` (the restart, until its first scrape). */
class ScrapingPrometheus extends ScriptedProvider {
  gapFrom = Number.POSITIVE_INFINITY;
  gapUntil = Number.POSITIVE_INFINITY;
  constructor() {
    super([(_query: string, context: QueryContext): QueryResult => {
      const at = context.now.getTime();
      return { resultType: 'vector', samples: at >= this.gapFrom && at < this.gapUntil ? [] : [{ labels: {}, value: 0.97 }] };
    }], 'prometheus');
  }
}

function world() {
  return { scheduler: new ManualScheduler(T0), repository: new InMemoryRolloutRepository(), fleet: new InMemoryFleet(fleetOf(10)), models: new InMemoryModelStatus('1'), prometheus: new ScrapingPrometheus() };
}

function controllerOf(w: ReturnType<typeof world>, builtin = new ScriptedProvider([[0.97]], 'builtin'), extra: { startupGraceMs?: number } = {}): RolloutController {
  return new RolloutController({
    repository: w.repository,
    fleet: w.fleet,
    models: w.models,
    providers: new MetricProviderResolver({ builtin, prometheus: w.prometheus }),
    scheduler: w.scheduler,
    actionRetryMs: 1000,
    newId: () => 'ro-grace',
    ...extra,
  });
}

async function drive(w: ReturnType<typeof world>, c: RolloutController, ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += 1000) {
    await w.scheduler.advance(1000);
    await c.idle();
  }
}

async function driveUntil(w: ReturnType<typeof world>, c: RolloutController, done: (state: RolloutState) => boolean, limitMs = 600_000): Promise<RolloutState> {
  for (let elapsed = 0; elapsed <= limitMs; elapsed += 1000) {
    const state = await c.status('ro-grace');
    if (done(state)) return state;
    await drive(w, c, 1000);
  }
  throw new Error(`not done after ${limitMs} ms: ${(await c.status('ro-grace')).phase}`);
}

/**
 * Runs the rollout until its analysis has one measurement of accuracy-vs-baseline, stops the
 * server for RESTART_MS (Prometheus has nothing of it from then until FIRST_SCRAPE_MS after the
 * new one started), and starts a new controller on the same store. Returns it and when it took over.
 */
async function restartAfterFirstMeasurement(w: ReturnType<typeof world>, steps: unknown[], second: (w: ReturnType<typeof world>) => RolloutController = (x) => controllerOf(x)): Promise<{ controller: RolloutController; takeover: number }> {
  const first = controllerOf(w);
  await first.start(specOf(steps), { by: 'alice' });
  await driveUntil(w, first, (s) => (s.analysis?.measurements.filter((m) => m.metric === promMetric.name).length ?? 0) >= 1);
  const stoppedAt = w.scheduler.now().getTime();
  first.stop();
  await first.idle();
  w.prometheus.gapFrom = stoppedAt;
  await w.scheduler.advance(RESTART_MS);
  const takeover = w.scheduler.now().getTime();
  w.prometheus.gapUntil = takeover + FIRST_SCRAPE_MS;
  const controller = second(w);
  await controller.recover();
  await controller.idle();
  return { controller, takeover };
}

const promMeasurements = async (c: RolloutController) => (await c.decisions('ro-grace')).filter((d) => d.kind === 'measurement' && d.measurement?.metric === promMetric.name);

describe('analysis start-up grace after a restart', () => {
  it('a prometheus measurement due right after a restart waits for the grace (Prometheus has scraped the new process), says why, and the rollout promotes instead of pausing', async () => {
    const w = world();
    // A builtin metric of the same analysis: it reads the server's own series and does not wait.
    const builtinMetric = { name: 'own-series', interval: '15s', count: 2, provider: { builtin: { query: 'own' } }, successCondition: 'result[0] >= 0.9' };
    const { controller, takeover } = await restartAfterFirstMeasurement(w, [{ setWeight: 50 }, { analysis: { metrics: [promMetric, builtinMetric] } }, { setWeight: 100 }]);
    const state = await driveUntil(w, controller, (s) => s.phase === 'Completed' || s.phase === 'Paused' || s.phase === 'Failed');
    const decisions = await controller.decisions('ro-grace');
    assert.deepEqual(decisions.filter((d) => d.verdict === 'Inconclusive').map((d) => d.message), [], 'no measurement or analysis is Inconclusive');
    assert.equal(state.phase, 'Completed', `the rollout promotes: ${state.pause?.message ?? state.outcome?.reason ?? ''}`);
    assert.equal(w.models.production, '2');

    const [, second] = (await promMeasurements(controller)).map((d) => d.measurement!);
    assert.ok(second, 'the prometheus metric was measured a second time');
    assert.equal(second.phase, 'Successful');
    assert.equal(Date.parse(second.startedAt), takeover + 30_000, 'taken when the default 30 s grace has passed, not when it fell due');
    assert.ok(second.waited, 'the measurement records that it waited');
    assert.ok(Date.parse(second.waited.dueAt) < takeover + 30_000, `it was due within the grace (${second.waited.dueAt})`);
    assert.equal(second.waited.until, new Date(takeover + 30_000).toISOString());
    assert.match(second.message, /^accuracy-vs-baseline: .*\(due at .*, held until .*: this server took over the rollouts at .* \(a restart or a new leader\), and Prometheus measurements wait 30 s \(--analysis-startup-grace\) for Prometheus to scrape it again\)$/);

    const own = decisions.filter((d) => d.kind === 'measurement' && d.measurement?.metric === 'own-series').map((d) => d.measurement!);
    assert.equal(own.length, 2, 'the builtin metric was measured twice');
    assert.equal(own[1]!.waited, undefined, 'a builtin measurement never waits');
    assert.ok(Date.parse(own[1]!.startedAt) < takeover + FIRST_SCRAPE_MS, `the builtin measurement ran when due (${own[1]!.startedAt}), within the grace`);
    controller.stop();
  });

  it('an operator abort during the grace acts at once, and the held measurement is never taken', async () => {
    const w = world();
    const { controller, takeover } = await restartAfterFirstMeasurement(w, [{ setWeight: 50 }, { analysis: { metrics: [promMetric] } }, { setWeight: 100 }]);
    await drive(w, controller, 10_000);
    const during = await controller.status('ro-grace');
    assert.equal(during.phase, 'Progressing', `10 s after the restart (past the measurement's due time) the rollout still analyses: ${during.pause?.message ?? ''}`);
    assert.equal((await promMeasurements(controller)).length, 1, 'only the measurement from before the restart');

    const calls = w.prometheus.calls.length;
    const aborted = await controller.abort('ro-grace', 'alice', 'operator says stop');
    assert.equal(aborted.phase, 'Aborted', 'the abort does not wait for the grace');
    await controller.idle();
    assert.ok(w.scheduler.now().getTime() < takeover + 30_000, 'still within the grace');
    assert.deepEqual([...w.fleet.devices.values()].filter((d) => d.candidate !== null || d.active === '2').map((d) => d.id), [], 'every device is back on its baseline');

    await drive(w, controller, 60_000);
    assert.equal(w.prometheus.calls.length, calls, 'the held measurement never ran');
    assert.equal((await promMeasurements(controller)).length, 1);
    controller.stop();
  });

  it('a builtin metric failing during the grace rolls the rollout back at once; the held prometheus measurement is not taken', async () => {
    const w = world();
    const failing = { name: 'own-errors', initialDelay: '20s', interval: '15s', count: 2, provider: { builtin: { query: 'own_errors' } }, successCondition: 'result[0] <= 0.01' };
    // Measured once before the restart (at 20 s), failing at its second measurement, due 3 s after the restart.
    const builtin = new ScriptedProvider([[0], [0.5]], 'builtin');
    const steps = [{ setWeight: 50 }, { analysis: { metrics: [{ ...promMetric, interval: '30s', count: 3 }, failing] } }, { setWeight: 100 }];
    const first = controllerOf(w, builtin);
    await first.start(specOf(steps), { by: 'alice' });
    await driveUntil(w, first, (s) => (s.analysis?.measurements.length ?? 0) >= 2);
    assert.deepEqual((await first.status('ro-grace')).analysis?.measurements.map((m) => m.metric), [promMetric.name, 'own-errors']);
    const stoppedAt = w.scheduler.now().getTime();
    first.stop();
    await first.idle();
    w.prometheus.gapFrom = stoppedAt;
    await w.scheduler.advance(RESTART_MS);
    const takeover = w.scheduler.now().getTime();
    w.prometheus.gapUntil = takeover + FIRST_SCRAPE_MS;
    const controller = controllerOf(w, builtin);
    await controller.recover();
    const state = await driveUntil(w, controller, (s) => s.phase === 'Failed' || s.phase === 'Paused' || s.phase === 'Completed');
    assert.equal(state.phase, 'Failed', `rolled back on the builtin failure: ${state.pause?.message ?? ''}`);
    assert.ok(w.scheduler.now().getTime() < takeover + 30_000, 'within the grace: the failure did not wait for it');
    const decisions = await controller.decisions('ro-grace');
    assert.deepEqual(decisions.filter((d) => d.verdict === 'Inconclusive').map((d) => d.message), [], 'no Inconclusive measurement from an unscraped Prometheus');
    assert.equal((await promMeasurements(controller)).length, 1, 'the held prometheus measurement was not taken');
    controller.stop();
  });

  it('the grace is bounded: a Prometheus still empty when it ends gives an Inconclusive measurement then, at the configured grace, not later', async () => {
    const w = world();
    const { controller, takeover } = await restartAfterFirstMeasurement(w, [{ setWeight: 50 }, { analysis: { metrics: [promMetric] } }, { setWeight: 100 }], (x) => controllerOf(x, undefined, { startupGraceMs: 20_000 }));
    w.prometheus.gapUntil = Number.POSITIVE_INFINITY; // never scrapes the new process
    const state = await driveUntil(w, controller, (s) => s.phase !== 'Progressing');
    assert.equal(state.phase, 'Paused', 'an empty answer after the grace is Inconclusive, as always');
    const [, second] = (await promMeasurements(controller)).map((d) => d.measurement!);
    assert.ok(second, 'the prometheus metric was measured a second time');
    assert.equal(second.phase, 'Inconclusive');
    assert.equal(Date.parse(second.startedAt), takeover + 20_000, 'taken when the configured 20 s grace ended');
    assert.match(second.message, /wait 20 s \(--analysis-startup-grace\)/);
    controller.stop();
  });
});
