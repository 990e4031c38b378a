/** Prometheus metric names shared by the server and the edge agent, so dashboards and alerts agree. */
export const METRIC_PREFIX = 'fleetprune_';

export const SERVER_METRICS = {
  httpRequestDuration: 'fleetprune_http_request_duration_seconds',
  grpcRequestDuration: 'fleetprune_grpc_request_duration_seconds',
  registryModels: 'fleetprune_registry_models',
  registryVersions: 'fleetprune_registry_versions',
  jobsRunning: 'fleetprune_jobs_running',
  jobsFinished: 'fleetprune_jobs_finished_total',
  blobBytesServed: 'fleetprune_blob_bytes_served_total',
  blobGcFreedBytes: 'fleetprune_blob_gc_freed_bytes_total',
  /** Stored blob copies a download found damaged (their bytes hash to something else) and set aside. */
  blobsDamaged: 'fleetprune_blobs_damaged_total',
  stalledStreamsEnded: 'fleetprune_stalled_streams_ended_total',
  /** Gauge: 1 while the store (the database) answers; 0 while it does not (the store's gauges then keep their last values). */
  storeUp: 'fleetprune_store_up',
} as const;
