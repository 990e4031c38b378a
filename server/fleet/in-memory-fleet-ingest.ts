import type { Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import type { FleetIngest, IngestOutcome, StateOutcome } from './fleet-ingest.ts';
import { storedReportKey } from '../store/repositories/device-reports-repository.ts';

type Listener = (report: Report) => void;

/**
 * A FleetIngest held in memory, for tests and benchmarks (the server's store is the real one).
 * It deduplicates reports by id (per device, as the store does) and lets callers wait for a report.
 */
export class InMemoryFleetIngest implements FleetIngest {
  readonly reports: Report[] = [];
  readonly statuses = new Map<string, Status>();
  readonly telemetry = new Map<string, Telemetry>();
  /** Every heartbeat, in the order it came. */
  readonly heartbeats: Telemetry[] = [];
  readonly #ids = new Set<string>();
  readonly #listeners = new Set<Listener>();

  async ingestReport(report: Report): Promise<IngestOutcome> {
    const key = storedReportKey(report);
    if (this.#ids.has(key)) return 'duplicate';
    this.#ids.add(key);
    this.reports.push(report);
    for (const listener of this.#listeners) listener(report);
    return 'ingested';
  }

  async recordTelemetry(telemetry: Telemetry): Promise<StateOutcome> {
    this.telemetry.set(telemetry.deviceId, telemetry);
    this.heartbeats.push(telemetry);
    return 'recorded';
  }

  async recordStatus(status: Status): Promise<StateOutcome> {
    this.statuses.set(status.deviceId, status);
    return 'recorded';
  }

  /** Resolves with the first report (already ingested or future) that satisfies `match`. */
  waitForReport<R extends Report>(match: (report: Report) => report is R, timeoutMs?: number): Promise<R>;
  waitForReport(match: (report: Report) => boolean, timeoutMs?: number): Promise<Report>;
  waitForReport(match: (report: Report) => boolean, timeoutMs = 30_000): Promise<Report> {
    const existing = this.reports.find(match);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error(`no matching report within ${timeoutMs} ms (have ${this.reports.length}: ${this.reports.map((r) => r.kind + (r.kind === 'assignment' ? `/${r.outcome}` : '')).join(', ')})`));
      }, timeoutMs);
      const listener: Listener = (report) => {
        if (!match(report)) return;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve(report);
      };
      this.#listeners.add(listener);
    });
  }
}
