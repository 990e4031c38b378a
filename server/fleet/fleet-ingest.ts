import type { ModelRef, Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';

export type IngestOutcome = 'ingested' | 'duplicate' | 'unknown-assignment' | 'wrong-outcome' | 'unknown-device' | UnknownModel | WrongModel;

/**
 * A benchmark report naming a model that is not a registered version with that sha256 (its
 * artifact id): the first such entry, for the drop's log line. Nothing is stored or exported.
 */
export interface UnknownModel {
  outcome: 'unknown-model';
  role: 'active' | 'candidate';
  ref: ModelRef;
}

/**
 * A benchmark report, or an answer that moves a slot, naming another model (`ref`) than the
 * assignment it names (`assigned`). Nothing is stored or exported.
 */
export interface WrongModel {
  outcome: 'wrong-model';
  ref: ModelRef;
  assigned: ModelRef;
}

/**
 * What became of a heartbeat or status: 'recorded'; 'held' (a throttle keeps it to write later,
 * and counts what becomes of it then); 'unknown-device' when the device is not enrolled or is
 * revoked (nothing is stored: one in flight at revocation, or its retained `online` status handed
 * over again, must not change the revoked device's state).
 */
export type StateOutcome = 'recorded' | 'held' | 'unknown-device' | 'out-of-order';

/**
 * How a heartbeat or status the store did not take is counted (its drop reason) and logged, or
 * null when it was taken ('recorded', or 'held' for later). 'out-of-order': a heartbeat of the
 * same agent run as the stored one but sent before it (a lower uptime), delivered late; storing
 * it would set the device's state back, and its lower counters would count as a restart.
 */
export function stateDrop(outcome: StateOutcome): { reason: string; message: string } | null {
  if (outcome === 'unknown-device') return { reason: outcome, message: 'dropped a heartbeat or status from a device that is not enrolled or is revoked' };
  if (outcome === 'out-of-order') return { reason: outcome, message: 'dropped a heartbeat older than the one stored from the same agent run (delivered out of order)' };
  return null;
}

/**
 * Where validated device messages go. The server's store implements it (raw report history,
 * device online state, last heartbeat); ingestReport must be idempotent by report id.
 */
export interface FleetIngest {
  /**
   * 'duplicate' when a report with this id was ingested before (nothing is stored again);
   * 'unknown-assignment' for an assignment report that answers no assignment or fleet command the
   * server issued to that device (nothing is stored); 'wrong-outcome' for a slot-moving answer
   * that what it answers cannot have (nothing is stored); 'unknown-device' for a report from a device
   * that is not enrolled or is revoked (nothing is stored or exported: the broker should not have
   * let it publish, but a report can still be in flight at revocation); an UnknownModel for a
   * benchmark report about a model version the registry does not hold, a WrongModel for a
   * benchmark or a slot-moving answer about another model than its assignment's (nothing is
   * stored; see issued-reports.ts).
   */
  ingestReport(report: Report): Promise<IngestOutcome>;
  /** See StateOutcome. */
  recordTelemetry(telemetry: Telemetry): Promise<StateOutcome>;
  recordStatus(status: Status): Promise<StateOutcome>;
}
