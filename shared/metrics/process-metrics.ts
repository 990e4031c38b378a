import { Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/**
 * How often prom-client samples the event loop's delay (ms) for its nodejs_eventloop_lag_* metrics.
 * Its default, 10 ms, woke an idle server or agent about 200 times a second (1 to 2% of a core
 * idle, on a device that should sleep); a delay of an event loop is still measured to the
 * nanosecond at this rate, only sampled less often.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * prom-client's gauges of the summed active handles, requests and resources end in `_total`, which
 * Prometheus keeps for counters (`promtool check metrics` fails the scrape on them). Each is the sum
 * of a gauge exported beside it by type (`nodejs_active_handles{type}`), so leaving them out loses
 * nothing: `sum(…_nodejs_active_handles)` is the total.
 */
const GAUGES_NAMED_AS_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** prom-client's process and Node.js metrics, made once per process for each name prefix. */
const shared = new Map<string, Metric[]>();

/**
 * Registers prom-client's process and Node.js metrics (CPU, memory, file descriptors, event loop
 * lag, GC, under `prefix`) in `registry`. They describe the process, so they are made once per
 * process and prefix and shared by every registry that asks (servers or agents sharing a process,
 * as tests run them): each collectDefaultMetrics() call starts an event-loop monitor and a GC
 * observer of its own that nothing can stop, so a process making one per server or agent kept
 * every one it ever made running.
 */
export function registerProcessMetrics(registry: Registry, prefix: string): void {
  let metrics = shared.get(prefix);
  if (!metrics) {
    const own = new Registry();
    collectDefaultMetrics({ register: own, prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    for (const name of GAUGES_NAMED_AS_COUNTERS) own.removeSingleMetric(`${prefix}${name}`);
    metrics = own.getMetricsAsArray() as unknown as Metric[];
    shared.set(prefix, metrics);
  }
  for (const metric of metrics) registry.registerMetric(metric);
}
