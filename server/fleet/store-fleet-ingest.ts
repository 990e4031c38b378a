import type { Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport } from '../metricproviders/report-history.ts';
import type { AssignmentOutcomes } from './assignment-outcomes.ts';
import { slotsAfter } from './device-slots.ts';
import type { FleetIngest } from './fleet-ingest.ts';
import type { FleetStore } from './fleet-store.ts';

export interface StoreFleetIngestOptions {
  fleet: FleetStore;
  /** The device label whose value is a report's cohort ('none' when the device has no such label). */
  cohortLabel: string;
  outcomes: AssignmentOutcomes;
  /** Called with the DeviceReports of each newly ingested benchmark report (the metrics export). */
  onBenchmark?: (reports: DeviceReport[]) => void;
  /** Called when a device announces itself online (rollouts retry what it missed). */
  onDeviceOnline?: (deviceId: string) => void;
  clock?: () => Date;
}

/**
 * The FleetIngest over the store: every report once (by id) in the raw history; an assignment
 * report also records the device's answer on the assignment and updates the device's slots;
 * status and telemetry update the device's online state and heartbeat.
 */
export class StoreFleetIngest implements FleetIngest {
  readonly #options: StoreFleetIngestOptions;

  constructor(options: StoreFleetIngestOptions) {
    this.#options = options;
  }

  #now(): string {
    return (this.#options.clock?.() ?? new Date()).toISOString();
  }

  async ingestReport(report: Report): Promise<'ingested' | 'duplicate'> {
    const now = this.#now();
    const stored = await this.#options.fleet.transaction(async (tx) => {
      const device = await tx.devices.get(report.deviceId);
      const cohort = device?.labels[this.#options.cohortLabel] ?? 'none';
      if (!(await tx.reports.insert(report, cohort, now))) return null;
      if (report.kind === 'assignment' && device) {
        await tx.assignments.setOutcome(report.assignmentId, report.deviceId, report.outcome, report.reason, now);
        const slots = slotsAfter(device, report);
        if (slots) await tx.devices.setSlots(device.id, slots, now);
      }
      return { cohort };
    });
    if (!stored) return 'duplicate';
    if (report.kind === 'assignment') this.#options.outcomes.answered(report);
    else this.#options.onBenchmark?.(deviceReportsFromBenchmark(report, stored.cohort));
    return 'ingested';
  }

  async recordTelemetry(telemetry: Telemetry): Promise<void> {
    await this.#options.fleet.repos.devices.recordTelemetry(telemetry, this.#now());
  }

  async recordStatus(status: Status): Promise<void> {
    await this.#options.fleet.repos.devices.setStatus(status.deviceId, status.online, new Date(status.since).toISOString(), this.#now());
    if (status.online) this.#options.onDeviceOnline?.(status.deviceId);
  }
}
