import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { EXPORTED_FINISHED_ROLLOUTS, RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import { startRollout } from '../../server/rollout/rollout-state-machine.ts';
import type { DecisionLogEntry, RolloutState } from '../../server/rollout/rollout-state.ts';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { analysisStep, fleetOf, specOf, T0 } from './rollout-fixtures.ts';

function rollout(id: string): { state: RolloutState; decisions: readonly DecisionLogEntry[] } {
  const { state, decisions } = startRollout(id, specOf([{ setWeight: 100 }]), { type: 'start', at: T0, by: 'a', devices: fleetOf(4), previousProduction: null });
  return { state, decisions };
}

/** The rollout ids that have at least one series of each rollout metric. */
async function exported(registry: Registry): Promise<Record<string, string[]>> {
  const byMetric: Record<string, string[]> = {};
  for (const metric of await registry.getMetricsAsJSON()) {
    byMetric[metric.name] = [...new Set(metric.values.map((value) => String(value.labels.rollout)))].sort();
  }
  return byMetric;
}

test('rollout series: unfinished rollouts and the last few finished ones are exported; older finished ones are removed from every metric', async () => {
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const running = rollout('ro-running');
  metrics.observe(running.state, running.decisions);
  const finished: string[] = [];
  for (let i = 0; i < EXPORTED_FINISHED_ROLLOUTS + 5; i++) {
    const id = `ro-done-${String(i).padStart(2, '0')}`;
    const { state, decisions } = rollout(id);
    metrics.observe(state, decisions);
    metrics.observe({ ...state, phase: 'Completed' }, []);
    metrics.observe({ ...state, phase: 'Completed' }, []); // observed again: still counted once
    finished.push(id);
  }
  const expected = ['ro-running', ...finished.slice(-EXPORTED_FINISHED_ROLLOUTS)].sort();
  const byMetric = await exported(registry);
  for (const name of [ROLLOUT_METRICS.step, ROLLOUT_METRICS.weight, ROLLOUT_METRICS.unreachableDevices, ROLLOUT_METRICS.decisions, ROLLOUT_METRICS.decisionTimestamp]) {
    assert.deepEqual(byMetric[name], expected, name);
  }
});

test('each analysis metric of a new rollout exports its measurement-error count at 0 before any measurement (so increase() counts the first error)', async () => {
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const latency = { name: 'latency', provider: { builtin: { query: 'lat' } }, successCondition: 'result[0] < 1' };
  const spec = specOf([{ setWeight: 5 }, analysisStep(), { setWeight: 50 }, analysisStep(latency), { setWeight: 100 }]);
  const { state, decisions } = startRollout('ro-zero', spec, { type: 'start', at: T0, by: 'a', devices: fleetOf(4), previousProduction: null });
  metrics.observe(state, decisions);
  const errors = async () =>
    ((await registry.getSingleMetric(ROLLOUT_METRICS.decisions)!.get()).values as { labels: Record<string, string>; value: number }[])
      .filter((value) => value.labels.kind === 'measurement' && value.labels.verdict === 'Error')
      .map((value) => [value.labels.rollout, value.labels.metric, value.value])
      .sort();
  assert.deepEqual(await errors(), [['ro-zero', 'accuracy', 0], ['ro-zero', 'latency', 0]]);
  metrics.observe(state, [{ id: 'd9', rolloutId: 'ro-zero', at: T0, kind: 'measurement', stepIndex: 1, verdict: 'Error', message: 'provider down', measurement: { metric: 'accuracy', thresholds: {} } } as unknown as DecisionLogEntry]);
  assert.deepEqual(await errors(), [['ro-zero', 'accuracy', 1], ['ro-zero', 'latency', 0]]);

  const done = rollout('ro-finished-elsewhere');
  metrics.observe({ ...done.state, phase: 'Completed' }, []);
  assert.deepEqual((await errors()).filter(([id]) => id === 'ro-finished-elsewhere'), [], 'a rollout first seen finished gets no zero series');

  // Once enough later rollouts have finished, ro-zero's error counts go with its other series.
  metrics.observe({ ...state, phase: 'Completed' }, []);
  for (let i = 0; i < EXPORTED_FINISHED_ROLLOUTS; i++) {
    const later = rollout(`ro-later-${i}`);
    metrics.observe(later.state, later.decisions);
    metrics.observe({ ...later.state, phase: 'Completed', updatedAt: T0 + 1000 * (i + 1) }, []);
  }
  assert.deepEqual((await errors()).filter(([id]) => id === 'ro-zero'), []);
});

test('a deposed leader drops every rollout series (frozen, they would keep alerts firing next to the new leader\'s)', async () => {
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const { state, decisions } = rollout('ro-1');
  metrics.observe(state, decisions);
  metrics.setFailingActions('ro-1', 1);
  assert.deepEqual((await exported(registry))[ROLLOUT_METRICS.failingActions], ['ro-1']);
  metrics.reset();
  for (const [name, rollouts] of Object.entries(await exported(registry))) assert.deepEqual(rollouts, [], name);
  // Elected again later: exported afresh.
  metrics.observe(state, []);
  assert.deepEqual((await exported(registry))[ROLLOUT_METRICS.step], ['ro-1']);
});

test('each decision label set exports the time of its latest decision (alerts read it, not the counter\'s novelty)', async () => {
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const { state, decisions } = rollout('ro-time');
  metrics.observe(state, decisions);
  const failure = (at: number) => ({ id: `f${at}`, rolloutId: 'ro-time', at, kind: 'failure', stepIndex: 0, verdict: 'failed', message: 'bad' }) as unknown as DecisionLogEntry;
  metrics.observe(state, [failure(T0 + 5000), failure(T0 + 9000)]);
  const times = (await registry.getSingleMetric(ROLLOUT_METRICS.decisionTimestamp)!.get()).values.filter((value) => value.labels.kind === 'failure');
  assert.deepEqual(times.map((value) => [value.labels.rollout, value.labels.verdict, value.value]), [['ro-time', 'failed', (T0 + 9000) / 1000]]);
});

// A revoked device is unreachable to its rollout for good: counted, it kept
// FleetpruneRolloutDevicesUnreachable firing ("they converge when they come back online") for ever.
test('the unreachable devices of a rollout do not count those that left the fleet', async () => {
  const registry = new Registry();
  const metrics = new RolloutMetrics(registry);
  const { state, decisions } = rollout('ro-left');
  const [a, b, c] = state.devices;
  const devices = state.devices.map((device) =>
    device.id === a!.id ? { ...device, delivery: 'unreachable' as const } : device.id === b!.id ? { ...device, delivery: 'unreachable' as const, left: true as const } : device.id === c!.id ? { ...device, delivery: 'delivered' as const } : device,
  );
  metrics.observe({ ...state, devices }, decisions);
  const gauge = (await registry.getMetricsAsJSON()).find((metric) => metric.name === ROLLOUT_METRICS.unreachableDevices)!;
  assert.deepEqual(gauge.values.map((value) => [value.labels.rollout, value.value]), [['ro-left', 1]]);
});
