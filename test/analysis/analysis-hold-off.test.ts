import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnalysisRun } from '../../server/analysis/analysis-run.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider } from './scripted-provider.ts';

/**
 * AnalysisRun's holdOff (the rollout controller's start-up grace): a measurement on a held
 * provider that falls due before holdOff.until is taken at holdOff.until exactly, and says so;
 * one on another provider, or due after it, runs when due.
 */

function metricsOf(metrics: Record<string, unknown>[]): AnalysisMetric[] {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics } }] });
  const step = spec.steps[0]!;
  assert.equal(step.kind, 'analysis');
  return [...(step as { metrics: readonly AnalysisMetric[] }).metrics];
}

const T = Date.UTC(2026, 0, 1);
const REASON = 'this server took over the rollouts just now';

function harness(metrics: AnalysisMetric[], previous: Measurement[] = []) {
  const scheduler = new ManualScheduler(T);
  const prometheus = new ScriptedProvider([[0.95]], 'prometheus');
  const builtin = new ScriptedProvider([[0.95]], 'builtin');
  const seen: Measurement[] = [];
  const held: { metric: string; dueAt: number; until: number }[] = [];
  const run = new AnalysisRun({
    metrics,
    providers: new MetricProviderResolver({ builtin, prometheus }),
    scheduler,
    startedAt: new Date(T - 60_000),
    previous,
    holdOff: { until: new Date(T + 30_000), providers: ['prometheus'], reason: REASON },
    onHeld: (metric, dueAt, until) => held.push({ metric, dueAt: dueAt.getTime(), until: until.getTime() }),
    context: { model: 'wine', candidateVersion: '2', devices: ['d1'], args: { model: 'wine', candidateVersion: '2', rollout: 'r', cohort: 'd1', cohortSize: '1', step: '0' } },
    onMeasurement: (m) => {
      seen.push(m);
    },
  });
  return { scheduler, prometheus, builtin, run, seen, held };
}

describe('analysis run: hold-off (start-up grace)', () => {
  it('a prometheus measurement due within the hold-off waits until it ends, exactly, and records why; builtin and later ones run when due', async () => {
    const metrics = metricsOf([
      { name: 'prom', interval: '15s', count: 3, provider: { prometheus: { query: 'p' } }, successCondition: 'result[0] >= 0.9' },
      { name: 'own', interval: '15s', count: 3, provider: { builtin: { query: 'b' } }, successCondition: 'result[0] >= 0.9' },
    ]);
    // Each measured once 57 s before now (the run resumes after a restart): both due 42 s ago.
    const before = (metric: string): Measurement => ({ metric, index: 0, phase: 'Successful', startedAt: new Date(T - 57_000).toISOString(), finishedAt: new Date(T - 57_000).toISOString(), provider: 'x', queries: {}, value: [0.95], thresholds: { minSamples: 1 }, message: `${metric}: ok` });
    const h = harness(metrics, [before('prom'), before('own')]);
    h.run.start();
    await h.scheduler.advance(0);
    assert.deepEqual(h.seen.map((m) => m.metric), ['own'], 'the builtin measurement runs at once');
    assert.equal(h.seen[0]!.waited, undefined);
    assert.deepEqual(h.held, [{ metric: 'prom', dueAt: T - 42_000, until: T + 30_000 }]);

    await h.scheduler.advance(29_999);
    assert.equal(h.prometheus.calls.length, 0, 'prometheus is not queried before the hold-off ends');
    await h.scheduler.advance(1);
    assert.deepEqual(h.prometheus.calls.map((call) => call.at), [T + 30_000]);
    const prom = h.seen.find((m) => m.metric === 'prom')!;
    assert.ok(prom, 'the prometheus metric was measured');
    assert.deepEqual(prom.waited, { dueAt: new Date(T - 42_000).toISOString(), until: new Date(T + 30_000).toISOString(), reason: REASON });
    assert.match(prom.message, /^prom: .* \(due at 2025-12-31T23:59:18\.000Z, held until 2026-01-01T00:00:30\.000Z: this server took over the rollouts just now\)$/);

    // The next one is due an interval after that one: after the hold-off, so it does not wait.
    await h.scheduler.advance(15_000);
    const third = h.seen.filter((m) => m.metric === 'prom')[1];
    assert.ok(third, 'the prometheus metric was measured again');
    assert.equal(Date.parse(third.startedAt), T + 45_000);
    assert.equal(third.waited, undefined, 'a measurement due after the hold-off runs when due');
    assert.equal(h.held.length, 1, 'held once');
    h.run.stop();
  });

  it('stop() during the hold-off cancels the held measurement', async () => {
    const h = harness(metricsOf([{ name: 'prom', provider: { prometheus: { query: 'p' } }, successCondition: 'result[0] >= 0.9' }]));
    h.run.start();
    await h.scheduler.advance(10_000);
    assert.equal(h.held.length, 1, 'the first measurement (due when the run started, a minute ago) is held');
    h.run.stop();
    await h.scheduler.advance(60_000);
    assert.equal(h.prometheus.calls.length, 0, 'never queried');
    assert.equal(h.scheduler.pendingCount, 0, 'no timer left');
  });
});
