import { AGENT_METRICS, PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { SERVER_METRICS } from '../../shared/metrics/names.ts';
import { DEVICE_REPORT_METRICS, ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';

/**
 * Every fleetprune_* series name the server and the agent export, from the shared name files,
 * so dashboards and rules can be checked against them. Histograms add _bucket/_sum/_count;
 * prom-client's default metrics carry the fleetprune_ prefix on the server
 * (fleetprune_process_*, fleetprune_nodejs_*) and fleetprune_agent_ on the agent
 * (fleetprune_agent_process_*, fleetprune_agent_nodejs_*).
 */
const HISTOGRAMS = new Set<string>([SERVER_METRICS.httpRequestDuration, SERVER_METRICS.grpcRequestDuration, AGENT_METRICS.predictLatency, AGENT_METRICS.servedLatency, AGENT_METRICS.shadowLatency]);

export function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const group of [SERVER_METRICS, ROLLOUT_METRICS, DEVICE_REPORT_METRICS, AGENT_METRICS, PROTOCOL_METRICS]) {
    for (const name of Object.values(group)) {
      if (HISTOGRAMS.has(name)) for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      else names.add(name);
    }
  }
  return names;
}

export function isExportedMetric(name: string): boolean {
  return exportedMetricNames().has(name) || /^fleetprune_(agent_)?(process|nodejs)_/.test(name);
}

/** fleetprune_* metric names (not recording rules, which contain ':') mentioned in a PromQL expression. */
export function fleetpruneMetricsIn(expr: string): string[] {
  return [...new Set([...expr.matchAll(/(?<![\w:])fleetprune_[a-zA-Z0-9_]+/g)].map((match) => match[0]))];
}
