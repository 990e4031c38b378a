import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAgentMetrics } from '../../agent/agent-metrics.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';

test('servers and agents sharing a process share one set of process metrics: making many starts no event-loop monitor per server or agent, and each still exports them', async () => {
  const servers = Array.from({ length: 3 }, () => new ServerMetrics());
  const agents = Array.from({ length: 3 }, () => createAgentMetrics());
  for (const [registries, name] of [[servers.map((s) => s.registry), 'fleetprune_nodejs_eventloop_lag_p99_seconds'], [agents.map((a) => a.registry), 'fleetprune_agent_nodejs_eventloop_lag_p99_seconds']] as const) {
    const metrics = registries.map((registry) => registry.getSingleMetric(name));
    assert.ok(metrics[0], `${name} is exported`);
    assert.ok(metrics.every((metric) => metric === metrics[0]), `one ${name} for the process, not one each`);
    for (const registry of registries) assert.match(await registry.metrics(), new RegExp(`^${name} \\d`, 'm'));
  }
  // The CPU of the process, as every registry reports it.
  assert.match(await servers[2]!.registry.metrics(), /^fleetprune_process_cpu_seconds_total \d/m);
  assert.match(await agents[2]!.registry.metrics(), /^fleetprune_agent_process_cpu_seconds_total \d/m);
});
