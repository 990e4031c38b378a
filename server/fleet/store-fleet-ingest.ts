import type { AssignmentReport, Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport, ReportTotal, ServingDelta } from '../metricproviders/report-history.ts';
import type { AssignmentOutcomes } from './assignment-outcomes.ts';
import { slotsAfter } from './device-slots.ts';
import { servingTotalsAfter } from './serving-totals.ts';
import { reportTotalsAfter, reportTotalsHeld, reportTotalsMoved, seedReportTotals, slotsHold } from './report-totals.ts';
import { olderInSameRun, sameAgentRun } from './agent-run.ts';
import { SLOT_OUTCOMES, unissuedReport } from './issued-reports.ts';
import type { FleetIngest, IngestOutcome, StateOutcome } from './fleet-ingest.ts';
import type { DeviceSlots } from '../store/repositories/devices-repository.ts';
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
  /** A device answered an assignment `benchmark-failed` (after it answered `installed`). */
  onBenchmarkFailed?: (report: AssignmentReport) => void;
  /** A device answered an assignment or fleet command and nobody waited for the answer (any outcome but benchmark-failed), once per answer. */
  onAnswer?: (report: AssignmentReport) => void;
  /** A device's slots changed with an answer (its exported series keep to what it holds); `at`: the device's time of the answer. */
  onSlotsChanged?: (deviceId: string, slots: DeviceSlots, at: Date) => void;
  /**
   * A heartbeat was recorded: the slots the device held when it sent it (`sentAt`, the device's
   * clock). Its series of models it no longer holds go, if nothing read since is newer.
   */
  onSlotsSeen?: (deviceId: string, slots: Pick<DeviceSlots, 'active' | 'candidate'>, sentAt: Date) => void;
  /** Something came from a device that is revoked (e.g. through another server on the same store): its series go. */
  onRevokedDevice?: (deviceId: string) => void;
  /** What a device served since its previous heartbeat (live predictions and errors, per model). */
  onServing?: (serving: ServingDelta) => void;
  clock?: () => Date;
}

/**
 * The FleetIngest over the store: every report once (by id) in the raw history; an assignment
 * report also records the device's answer on the assignment and updates the device's slots, but
 * only when it answers an assignment or fleet command the server issued to that device, naming
 * its model (anything else changes nothing); a benchmark report is taken only when it is about the
 * candidate its assignment named and registered versions (unissuedReport); status and telemetry
 * update the device's online state and heartbeat.
 */
export class StoreFleetIngest implements FleetIngest {
  readonly #options: StoreFleetIngestOptions;

  constructor(options: StoreFleetIngestOptions) {
    this.#options = options;
  }

  #now(): string {
    return (this.#options.clock?.() ?? new Date()).toISOString();
  }

  async ingestReport(report: Report): Promise<IngestOutcome> {
    const now = this.#now();
    const stored = await this.#options.fleet.transaction(async (tx) => {
      // An answer's slots, and a benchmark's totals, are computed from the device's current ones:
      // two reports ingested at once take turns.
      await tx.devices.lock(report.deviceId);
      const device = await tx.devices.get(report.deviceId);
      if (!device) return 'unknown-device' as const;
      if (device.revokedAt !== null) return 'revoked-device' as const;
      // An answer to nothing issued to the device, or a report about a model it was not assigned,
      // or one the registry does not hold, is nobody's evidence: no history row, no slots, no series.
      const unissued = await unissuedReport(tx, report);
      if (unissued) return unissued;
      const cohort = cohortOf(device.labels, this.#options.cohortLabel);
      // Totals kept from before fleet migration 10 start from what a restart restored (read before
      // this report is stored). An answer moving the slots stores them too: the seed's time rule
      // holds only for slots a heartbeat wrote (seedReportTotals).
      const seeds = device.reportTotals === null && (report.kind === 'benchmark' || SLOT_OUTCOMES.has(report.outcome));
      const totals = seeds ? ((await seedReportTotals(tx.reports, [device])).get(device.id) ?? []) : device.reportTotals;
      // A benchmark answering an assignment the server had replaced by a newer candidate assignment
      // to the device (one measured before, delivered late from the device's outbox) is kept in the
      // history only: its numbers are not the newer assignment's evidence (the device benchmarks
      // again when it takes that one). Decided now and stored, for the rebuilds to read.
      const evidence = !(await tx.reports.answersReplacedAssignment(report, now));
      if (!(await tx.reports.insert(report, cohort, now, evidence))) return 'duplicate' as const;
      if (!evidence) return { cohort, slots: null, evidence };
      if (report.kind === 'benchmark') {
        const next = reportTotalsAfter(totals ?? [], deviceReportsFromBenchmark(report, cohort), now);
        await tx.devices.setReportTotals(device.id, next);
        // A model the cap evicts loses its whole series live, served counters too: so do its totals.
        const evicted = new Set((totals ?? []).map((total) => total.model).filter((model) => !next.some((total) => total.model === model)));
        const served = device.servingTotals.filter((total) => !evicted.has(total.model));
        if (served.length !== device.servingTotals.length) await tx.devices.setServingTotals(device, served);
      }
      if (report.kind === 'assignment') {
        if (!(await tx.assignments.setOutcome(report.assignmentId, report.deviceId, report.outcome, report.reason, now))) await tx.commands.setAnswered(report.assignmentId, report.deviceId, now);
        const slots = slotsAfter(device, report);
        if (slots) await tx.devices.setSlots(device.id, slots, now);
        // An answer that changes no stored slot may still be news to the metric series: a
        // heartbeat read first (sent just after the change) already stored its slots. The answer,
        // not the heartbeat, moves the series: a heartbeat read late is older than the answers.
        const moved = SLOT_OUTCOMES.has(report.outcome) ? (slots ?? { active: device.active, candidate: device.candidate, previous: device.previous }) : null;
        // The totals follow the series: those the move removes go (a label set exported again
        // later starts afresh, as its series does), a promotion's copy comes with its time.
        if (moved && totals) await tx.devices.setReportTotals(device.id, reportTotalsMoved(totals, device.servingTotals, moved, report.createdAt, now));
        // Their served totals too: the series goes whole, and comes back (a rollback, a candidate
        // installed again) counting afresh, as live.
        const served = moved && device.servingTotals.filter((total) => slotsHold(moved, total));
        if (served && served.length !== device.servingTotals.length) await tx.devices.setServingTotals(device, served);
        return { cohort, slots: moved };
      }
      return { cohort, slots: null, evidence: true };
    });
    if (stored === 'revoked-device') {
      this.#options.onRevokedDevice?.(report.deviceId);
      return 'unknown-device';
    }
    if (typeof stored === 'string' || 'outcome' in stored) return stored;
    if (report.kind === 'assignment') {
      const awaited = this.#options.outcomes.answered(report);
      if (stored.slots) this.#options.onSlotsChanged?.(report.deviceId, stored.slots, new Date(report.createdAt));
      if (report.outcome === 'benchmark-failed') this.#options.onBenchmarkFailed?.(report);
      else if (!awaited) this.#options.onAnswer?.(report);
    } else if (stored.evidence) this.#options.onBenchmark?.(deviceReportsFromBenchmark(report, stored.cohort).map((entry) => ({ ...entry, receivedAt: new Date(now) })));
    return 'ingested';
  }

  /**
   * Stores the heartbeat and what the device served since the previous one (the difference of
   * their cumulative counters) added to its served totals, in one write: after a restart (or on a
   * new leader) the next heartbeat is compared with the last one stored and the exporter starts
   * again from the stored totals, so what was served before, or while the server was down, counts
   * once. A heartbeat written by someone else in between is read again (at most a few times).
   */
  async recordTelemetry(telemetry: Telemetry): Promise<StateOutcome> {
    const { devices } = this.#options.fleet.repos;
    for (let attempt = 1; ; attempt++) {
      const device = await devices.get(telemetry.deviceId);
      // A heartbeat still in flight when its device was revoked (or a retained one read later) must not
      // mark the revoked device online again, nor replace the slots it was revoked with.
      if (!device) return 'unknown-device';
      if (device.revokedAt !== null) {
        this.#options.onRevokedDevice?.(device.id);
        return 'unknown-device';
      }
      if (olderInSameRun(device.heartbeat, telemetry)) return 'out-of-order';
      const now = this.#now();
      const cohort = cohortOf(device.labels, this.#options.cohortLabel);
      // An agent that restarted (another run id; without run ids, its uptime went down) counts from zero again.
      const previous = sameAgentRun(device.heartbeat, telemetry) ? (device.heartbeat?.serving ?? null) : null;
      const counts = telemetry.serving ? servingDelta(previous, telemetry.serving) : null;
      const sentAt = new Date(telemetry.sentAt);
      const delta: ServingDelta | null = counts && { deviceId: device.id, cohort, active: telemetry.active, candidate: telemetry.candidate, ...counts, ...(Number.isFinite(sentAt.getTime()) ? { sentAt } : {}) };
      // A series the heartbeat leaves (measured after it was sent) keeps what it served too.
      const measured = device.reportTotals && Number.isFinite(sentAt.getTime()) ? reportTotalsHeld(device.reportTotals, telemetry, sentAt) : [];
      const next = servingTotalsAfter(device.servingTotals, delta, telemetry, now, measured);
      if (!(await devices.recordTelemetry(telemetry, now, { totals: next, after: device }))) {
        if (attempt < 3) continue;
        throw new Error(`the heartbeat of device ${device.id} kept meeting others written at the same time`);
      }
      // Marked offline while it was silent (or before its status arrived): rollouts waiting for it hear it is back.
      if (!device.online && telemetry.intervalSeconds !== undefined) this.#options.onDeviceOnline?.(device.id);
      if (delta) this.#options.onServing?.({ ...delta, receivedAt: new Date(now) });
      if (Number.isFinite(sentAt.getTime())) {
        await this.#keepHeldReportTotals(device.id, device.reportTotals, telemetry, sentAt);
        this.#options.onSlotsSeen?.(device.id, { active: telemetry.active, candidate: telemetry.candidate }, sentAt);
      }
      return 'recorded';
    }
  }

  /**
   * Drops the benchmark totals of models a heartbeat shows the device no longer holds (a
   * candidate it lost with no answer saying so), as the exporter drops their series. Rarely
   * anything to do: then the device's row is locked and read again, as a benchmark's write does.
   */
  async #keepHeldReportTotals(deviceId: string, read: readonly ReportTotal[] | null, slots: Pick<DeviceSlots, 'active' | 'candidate'>, sentAt: Date): Promise<void> {
    const stale = (totals: readonly unknown[] | null, held: readonly unknown[]) => totals !== null && held.length !== totals.length;
    if (!read || !stale(read, reportTotalsHeld(read, slots, sentAt))) return;
    await this.#options.fleet.transaction(async (tx) => {
      await tx.devices.lock(deviceId);
      const totals = (await tx.devices.get(deviceId))?.reportTotals ?? null;
      const held = totals && reportTotalsHeld(totals, slots, sentAt);
      if (held && stale(totals, held)) await tx.devices.setReportTotals(deviceId, held);
    });
  }

  async recordStatus(status: Status): Promise<StateOutcome> {
    const { devices } = this.#options.fleet.repos;
    // A revoked device's status (its retained `online`, which the broker sends the server again at
    // every subscription) must not show it online nor make rollouts retry it.
    const device = await devices.get(status.deviceId);
    if (!device) return 'unknown-device';
    if (device.revokedAt !== null) {
      this.#options.onRevokedDevice?.(device.id);
      return 'unknown-device';
    }
    // Revoked between the read and the write: the write changes nothing, and nobody hears of it.
    if (!(await devices.setStatus(status.deviceId, status.online, new Date(status.since).toISOString(), this.#now()))) return 'unknown-device';
    if (status.online) this.#options.onDeviceOnline?.(status.deviceId);
    return 'recorded';
  }
}

type Serving = NonNullable<Telemetry['serving']>;

/**
 * The difference of two cumulative heartbeat counters; all of `current` when a counter went
 * down (the agent restarted) or there is nothing before; null when nothing was served.
 */
export function servingDelta(previous: Serving | null, current: Serving): Pick<ServingDelta, ServingCounter> | null {
  const now = countersOf(current);
  const before = previous && countersOf(previous);
  const restarted = !before || SERVING_COUNTERS.some((key) => now[key] < before[key]);
  const delta = restarted ? now : (Object.fromEntries(SERVING_COUNTERS.map((key) => [key, now[key] - before[key]])) as typeof now);
  return SERVING_COUNTERS.some((key) => delta[key] > 0) ? delta : null;
}

const SERVING_COUNTERS = ['predictions', 'errors', 'shadowRows', 'shadowErrors'] as const;
type ServingCounter = (typeof SERVING_COUNTERS)[number];

function countersOf(serving: Serving): Record<ServingCounter, number> {
  return { predictions: serving.predictions, errors: serving.errors, shadowRows: serving.shadowRows, shadowErrors: serving.shadowErrors ?? 0 };
}

/**
 * The device's value of the cohort label, `none` without it. Its own labels only: a key such as
 * `toString` (a label key like any other) read an Object member of a device without it, a
 * function no store could bind, and every report of the server failed.
 */
export function cohortOf(labels: Readonly<Record<string, string>>, cohortLabel: string): string {
  return Object.hasOwn(labels, cohortLabel) ? labels[cohortLabel]! : 'none';
}
