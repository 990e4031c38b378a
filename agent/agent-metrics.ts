import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../shared/metrics/process-metrics.ts';
import { AGENT_METRICS } from '../shared/metrics/agent-names.ts';
import { ServedLatency } from './served-latency.ts';

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/**
 * The agent's Prometheus metrics, in a Registry of its own (many agents can share a process).
 * The registry also carries prom-client's process/Node.js metrics as fleetprune_agent_process_*
 * and fleetprune_agent_nodejs_* (agents sharing a process report the same process).
 */
export function createAgentMetrics() {
  const registry = new Registry();
  registerProcessMetrics(registry, 'fleetprune_agent_');
  const registers = [registry];
  return {
    registry,
    predictRequests: new Counter({ name: AGENT_METRICS.predictRequests, help: 'POST /v1/predict requests by HTTP status', labelNames: ['status'] as const, registers }),
    httpRefused: new Counter({
      name: AGENT_METRICS.httpRefused,
      help: 'Requests the device API refused before reading them, by HTTP status (400 malformed, 408 too slow, 431 headers too large); one for /v1/predict also counts in the predict requests',
      labelNames: ['status'] as const,
      registers,
    }),
    predictRows: new Counter({ name: AGENT_METRICS.predictRows, help: 'Rows predicted by the active model', registers }),
    predictLatency: new Histogram({ name: AGENT_METRICS.predictLatency, help: 'Active model inference time per request (fleetprune_agent_served_latency_seconds has it by model and version)', buckets: LATENCY_BUCKETS, registers }),
    servedLatency: new ServedLatency(
      new Histogram({
        name: AGENT_METRICS.servedLatency,
        help: 'Active model inference time per request, by the model and version that answered (series kept for the active and previous slots)',
        labelNames: ['model', 'version'] as const,
        buckets: LATENCY_BUCKETS,
        registers,
      }),
    ),
    shadowRuns: new Counter({ name: AGENT_METRICS.shadowRuns, help: 'Rows also run on the candidate (shadow), by candidate version', labelNames: ['version'] as const, registers }),
    shadowAgreements: new Counter({ name: AGENT_METRICS.shadowAgreements, help: 'Shadow rows where the candidate agreed with the active model, by candidate version', labelNames: ['version'] as const, registers }),
    shadowErrors: new Counter({ name: AGENT_METRICS.shadowErrors, help: 'Shadow rows the candidate failed (an error or a non-finite output), by candidate version', labelNames: ['version'] as const, registers }),
    shadowLatency: new Histogram({ name: AGENT_METRICS.shadowLatency, help: 'Candidate inference time per shadowed request', buckets: LATENCY_BUCKETS, registers }),
    assignments: new Counter({ name: AGENT_METRICS.assignments, help: 'Answers sent to assignments and fleet commands, by outcome (each answer once)', labelNames: ['outcome'] as const, registers }),
    downloadedBytes: new Counter({ name: AGENT_METRICS.downloadedBytes, help: 'Model bytes downloaded', registers }),
    benchmarkStarted: new Gauge({
      name: AGENT_METRICS.benchmarkStarted,
      help: 'When the candidate benchmark in progress started (Unix seconds), by candidate model and version; no series while none runs (a benchmark on a loaded device takes minutes, and an analysis meanwhile finds no report from the device)',
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    benchmarks: new Counter({ name: AGENT_METRICS.benchmarks, help: 'On-device benchmarks reported, by result (ok: a benchmark report; failed: a benchmark-failed answer)', labelNames: ['result'] as const, registers }),
    workQueued: new Gauge({ name: AGENT_METRICS.workQueued, help: 'Tasks in the agent\'s work queue, running or waiting (installs, benchmarks, fleet commands, housekeeping)', registers }),
    outboxPending: new Gauge({ name: AGENT_METRICS.outboxPending, help: 'Reports waiting in the on-disk outbox', registers }),
    droppedMessages: new Counter({ name: AGENT_METRICS.droppedMessages, help: 'Incoming MQTT messages dropped, by topic kind and reason', labelNames: ['kind', 'reason'] as const, registers }),
    mqttConnected: new Gauge({ name: AGENT_METRICS.mqttConnected, help: '1 while connected to the broker', registers }),
    modelInfo: new Gauge({
      name: AGENT_METRICS.modelInfo,
      help: "The models in the slots (value 1); fleet: the id of the server's signing key the agent pins, as the server's device series carry it",
      labelNames: ['slot', 'model', 'version', 'fleet'] as const,
      registers,
    }),
  };
}
export type AgentMetrics = ReturnType<typeof createAgentMetrics>;

/** Counts a request Node refused before the API saw it (createDeviceHttpServer's onRefused). */
export function countRefusal(metrics: AgentMetrics, status: number, path: string | undefined): void {
  metrics.httpRefused.inc({ status: String(status) });
  if (path === '/v1/predict') metrics.predictRequests.inc({ status: String(status) });
}
