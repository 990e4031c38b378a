/**
 * Prometheus metric names of the edge agent (its own /metrics) and of the fleet protocol's
 * readers on the server. The server core's names live in names.ts.
 */
export const AGENT_METRICS = {
  predictRequests: 'fleetprune_agent_predict_requests_total',
  predictRows: 'fleetprune_agent_predict_rows_total',
  predictLatency: 'fleetprune_agent_predict_latency_seconds',
  /** The same time, by the model and version that answered (predictLatency has no such labels: rules written for it keep working). */
  servedLatency: 'fleetprune_agent_served_latency_seconds',
  httpRefused: 'fleetprune_agent_http_refused_total',
  shadowRuns: 'fleetprune_agent_shadow_runs_total',
  shadowAgreements: 'fleetprune_agent_shadow_agreements_total',
  shadowErrors: 'fleetprune_agent_shadow_errors_total',
  shadowLatency: 'fleetprune_agent_shadow_latency_seconds',
  assignments: 'fleetprune_agent_assignments_total',
  downloadedBytes: 'fleetprune_agent_downloaded_bytes_total',
  benchmarks: 'fleetprune_agent_benchmarks_total',
  benchmarkStarted: 'fleetprune_agent_benchmark_started_timestamp_seconds',
  outboxPending: 'fleetprune_agent_outbox_pending',
  workQueued: 'fleetprune_agent_work_queued',
  droppedMessages: 'fleetprune_agent_dropped_messages_total',
  mqttConnected: 'fleetprune_agent_mqtt_connected',
  modelInfo: 'fleetprune_agent_model_info',
} as const;

export const PROTOCOL_METRICS = {
  /** Messages the server's fleet receiver dropped, labelled by topic kind and reason. */
  droppedMessages: 'fleetprune_fleet_dropped_messages_total',
  /** Messages it accepted, labelled by topic kind. */
  acceptedMessages: 'fleetprune_fleet_messages_total',
  /** Reports whose id had been ingested before. */
  duplicateReports: 'fleetprune_fleet_duplicate_reports_total',
  /** Publishes the embedded broker refused, labelled by reason. */
  brokerDenied: 'fleetprune_broker_denied_total',
  /** Gauge: enrolled devices, not revoked. */
  devices: 'fleetprune_fleet_devices',
  /** Gauge: enrolled devices connected now (their last status said online, or a heartbeat announcing its interval; not since marked silent). */
  devicesOnline: 'fleetprune_fleet_devices_online',
  /** Devices the server marked offline because it heard nothing from them for three of their heartbeat intervals. */
  devicesMarkedSilent: 'fleetprune_fleet_devices_marked_silent_total',
  /** Gauge: 1 while this server holds the fleet's broker side (embedded broker, or the external one as leader); 0 on a standby. */
  brokerActive: 'fleetprune_fleet_broker_active',
  /** Gauge: 1 while this server's connection to the broker is up (the embedded broker: always); 0 on a standby, and on a leader that lost the external broker. */
  brokerConnected: 'fleetprune_fleet_broker_connected',
  /** Gauge: 1 while the broker does not enforce the store's device credentials yet (a failed update the server retries). */
  brokerCredentialsStale: 'fleetprune_fleet_broker_credentials_stale',
} as const;
