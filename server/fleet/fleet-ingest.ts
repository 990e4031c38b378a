import type { Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';

/**
 * Where validated device messages go. The server's store implements it (raw report history,
 * device online state, last heartbeat); ingestReport must be idempotent by report id.
 */
export interface FleetIngest {
  /** 'duplicate' when a report with this id was ingested before (nothing is stored again). */
  ingestReport(report: Report): Promise<'ingested' | 'duplicate'>;
  recordTelemetry(telemetry: Telemetry): Promise<void>;
  recordStatus(status: Status): Promise<void>;
}
