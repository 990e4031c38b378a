import { Counter, type Registry } from 'prom-client';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';

/** Gauge: 1 while the broker does not enforce the store's device credentials yet (a failed update it retries). */
export const BROKER_CREDENTIALS_STALE = PROTOCOL_METRICS.brokerCredentialsStale;

/** The fleet's counters on the server's /metrics (names shared with the agent and dashboards). */
export interface FleetCounters {
  dropped: Counter<'kind' | 'reason'>;
  accepted: Counter<'kind'>;
  duplicates: Counter;
  denied: Counter<'reason'>;
  markedSilent: Counter;
}

export function fleetCounters(registry: Registry): FleetCounters {
  return {
    dropped: new Counter({ name: PROTOCOL_METRICS.droppedMessages, help: 'Device messages the server dropped, by topic kind and reason', labelNames: ['kind', 'reason'], registers: [registry] }),
    accepted: new Counter({ name: PROTOCOL_METRICS.acceptedMessages, help: 'Device messages the server accepted, by topic kind', labelNames: ['kind'], registers: [registry] }),
    duplicates: new Counter({ name: PROTOCOL_METRICS.duplicateReports, help: 'Device reports whose id had been ingested before', registers: [registry] }),
    markedSilent: new Counter({ name: PROTOCOL_METRICS.devicesMarkedSilent, help: 'Devices marked offline because nothing was heard from them for three of their heartbeat intervals (a device that died while the broker was down leaves no last will)', registers: [registry] }),
    denied: new Counter({ name: PROTOCOL_METRICS.brokerDenied, help: 'Connects, publishes and subscribes the embedded broker refused, by reason', labelNames: ['reason'], registers: [registry] }),
  };
}
