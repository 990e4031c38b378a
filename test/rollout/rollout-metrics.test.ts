import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { EXPORTED_FINISHED_ROLLOUTS, RolloutMetrics } from '../../server/rollout/rollout-metrics.ts';
import { startRollout } from '../../server/rollout/rollout-state-machine.ts';
import type { DecisionLogEntry, RolloutState } from '../../server/rollout/rollout-state.ts';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

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
  for (const name of [ROLLOUT_METRICS.step, ROLLOUT_METRICS.weight, ROLLOUT_METRICS.unreachableDevices, ROLLOUT_METRICS.decisions]) {
    assert.deepEqual(byMetric[name], expected, name);
  }
});
