import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport, ReportRole, ReportTotal, ServingTotal } from '../metricproviders/report-history.ts';
import { MAX_EXPORTED_MODELS_PER_DEVICE } from '../metricproviders/report-metrics-exporter.ts';
import type { DeviceReportsRepository } from '../store/repositories/device-reports-repository.ts';
import type { DeviceSlots } from '../store/repositories/devices-repository.ts';

/**
 * A device's benchmark totals after more of its benchmarks' DeviceReports (the exporter's rules
 * for its counters): one total per model and role; the same version and cohort add up, another
 * replaces it; at most MAX_EXPORTED_MODELS_PER_DEVICE models, the least recently benchmarked go.
 */
export function reportTotalsAfter(totals: readonly ReportTotal[], reports: readonly DeviceReport[], at: string): ReportTotal[] {
  const next = [...totals];
  for (const report of reports) {
    const index = next.findIndex((total) => total.model === report.model && total.role === report.role);
    const same = index >= 0 && next[index]!.version === report.version && next[index]!.cohort === report.cohort ? next[index]! : undefined;
    const ts = Number.isFinite(report.ts.getTime()) ? report.ts.toISOString() : at;
    // The exporter's series keeps the latest of its times (a promotion's, or an earlier-read benchmark's).
    const since = same ? heldSince(same) : -Infinity;
    next.push({
      model: report.model,
      version: report.version,
      role: report.role,
      cohort: report.cohort,
      predictions: (same?.predictions ?? 0) + report.predictions,
      errors: (same?.errors ?? 0) + report.errors,
      reports: (same?.reports ?? 0) + 1,
      latest: { accuracy: report.accuracy, mse: report.mse ?? null, latencyMs: { ...report.latencyMs }, predictions: report.predictions, errors: report.errors, ts, receivedAt: at },
      at,
      ...(since > Date.parse(ts) ? { since: new Date(since).toISOString() } : {}),
    });
    if (index >= 0) next.splice(index, 1);
  }
  // Newest last: the oldest models beyond the cap go, as the exporter evicts their series.
  const models = [...new Set(next.map((total) => total.model).reverse())].slice(0, MAX_EXPORTED_MODELS_PER_DEVICE);
  return next.filter((total) => models.includes(total.model));
}

/**
 * The totals whose model the slots still hold (the exporter's keepSlots rule). With `sentAt`
 * (slots from a heartbeat) a total benchmarked at or after it stays too: the heartbeat was sent
 * before that benchmark and only read later, so its slots are older than what the benchmark says.
 */
export function reportTotalsHeld(totals: readonly ReportTotal[], slots: Pick<DeviceSlots, 'active' | 'candidate'>, sentAt?: Date): ReportTotal[] {
  return totals.filter((total) => slotsHold(slots, total) || (sentAt !== undefined && !(heldSince(total) < sentAt.getTime())));
}

/**
 * Since when (the device's clock, ms) the device is known to hold a total's label set: what the
 * exporter keeps as its series' `since` (-Infinity when unknown, as there).
 */
export function heldSince(total: ReportTotal): number {
  const time = Date.parse(total.since ?? total.latest.ts);
  return Number.isFinite(time) ? time : -Infinity;
}

/**
 * The totals after an answer that moved the slots (the exporter's keepSlots rule): those of
 * models the slots no longer hold go, and a candidate promoted to active (no measured active
 * total of that version yet) gets an active copy of its numbers that counts nothing, held since
 * the answer (`answeredAt`, the device's clock). Kept with the device, so a restart exports the
 * copy as live, and a heartbeat sent before the promotion, read late, leaves it after a restart
 * as it does live. `served`: the device's served totals (an active label set of another cohort
 * that served already counts as measured, as in the exporter).
 */
export function reportTotalsMoved(totals: readonly ReportTotal[], served: readonly ServingTotal[], slots: Pick<DeviceSlots, 'active' | 'candidate'>, answeredAt: string, at: string): ReportTotal[] {
  return withPromotedCopies(reportTotalsHeld(totals, slots), served, slots, Date.parse(answeredAt), at);
}

/**
 * The totals with an active copy (counting nothing) of each candidate the slots hold as active
 * with no measured active total of that version (the exporter's copyPromoted rule), held since
 * `promotedAt` (NaN: since the candidate's benchmark) and stored at `at` (undefined: the
 * candidate's).
 */
function withPromotedCopies(totals: readonly ReportTotal[], served: readonly ServingTotal[], slots: Pick<DeviceSlots, 'active' | 'candidate'>, promotedAt: number, at: string | undefined): ReportTotal[] {
  const next = [...totals];
  for (const total of totals) {
    if (total.role !== 'candidate' || !slotsHold(slots, { ...total, role: 'active' })) continue;
    const measured =
      next.some((other) => other.model === total.model && other.role === 'active' && slotsHold(slots, other)) ||
      served.some((other) => other.model === total.model && other.role === 'active' && slotsHold(slots, other) && other.cohort !== total.cohort);
    if (measured) continue;
    const { since: _since, ...numbers } = total;
    // The copy's report time is its candidate benchmark's receipt (a total stored before receivedAt was kept: its `at`), not the promotion's.
    const latest = { ...total.latest, receivedAt: total.latest.receivedAt ?? total.at };
    next.push({ ...numbers, latest, role: 'active', predictions: 0, errors: 0, reports: 0, at: at ?? total.at, ...(Number.isFinite(promotedAt) ? { since: new Date(promotedAt).toISOString() } : {}) });
  }
  return next;
}

/** Whether the slots hold a label set's model: its active one as active, a candidate as candidate or promoted to active. */
export function slotsHold(slots: Pick<DeviceSlots, 'active' | 'candidate'>, labels: { model: string; version: string; role: ReportRole }): boolean {
  const holds = (ref: { model: string; version: string } | null) => ref !== null && ref.model === labels.model && ref.version === labels.version;
  return labels.role === 'active' ? holds(slots.active) : holds(slots.candidate) || holds(slots.active);
}

/** The latest benchmark of a device's total, as the DeviceReport the exporter sets its gauges from. */
export function latestReportOf(deviceId: string, total: ReportTotal): DeviceReport {
  const { latest } = total;
  return { model: total.model, version: total.version, role: total.role, cohort: total.cohort, deviceId, accuracy: latest.accuracy, mse: latest.mse, latencyMs: latest.latencyMs, errors: latest.errors, predictions: latest.predictions, ts: new Date(latest.ts), receivedAt: new Date(latest.receivedAt ?? total.at) };
}

/**
 * Benchmark totals for devices that have none stored yet (enrolled before the store kept them):
 * what the server restored for them until now, each device's latest benchmark per model of the
 * models its slots hold, so their counters go on from there rather than from zero (a restore
 * takes the stored totals as they are: those of models long dropped must not come back). Keyed
 * by device.
 *
 * The slots are taken under the time rule of the heartbeat that stored them (reportTotalsHeld
 * with its sentAt): a heartbeat sent before a benchmark and read after it stores slots older than
 * the benchmark, and the live exporter keeps that benchmark's series. Only a heartbeat can have
 * written them since: an answer seeds the totals when it moves the slots (StoreFleetIngest).
 * The active copies of promotions the server made at restore until then are seeded with them,
 * so a restart (which makes none: every copy since is stored with its answer) exports them again.
 */
export async function seedReportTotals(
  reports: Pick<DeviceReportsRepository, 'latestBenchmarks'>,
  devices: readonly (Pick<DeviceSlots, 'active' | 'candidate'> & { id: string; heartbeat?: { at: string } | null; servingTotals?: readonly ServingTotal[] })[],
): Promise<Map<string, ReportTotal[]>> {
  const wanted = new Map(devices.map((device) => [device.id, device] as const));
  const seeds = new Map<string, ReportTotal[]>();
  for (const { report, cohort, receivedAt } of await reports.latestBenchmarks(devices.length === 1 ? { deviceId: devices[0]!.id } : {})) {
    if (report.kind !== 'benchmark' || !wanted.has(report.deviceId)) continue;
    seeds.set(report.deviceId, reportTotalsAfter(seeds.get(report.deviceId) ?? [], deviceReportsFromBenchmark(report, cohort), receivedAt));
  }
  for (const [id, totals] of seeds) {
    const device = wanted.get(id)!;
    const sentAt = device.heartbeat ? new Date(device.heartbeat.at) : undefined;
    const held = reportTotalsHeld(totals, device, sentAt && Number.isFinite(sentAt.getTime()) ? sentAt : undefined);
    // With the active copies of promotions, as the server restored them (none were stored then): held since their benchmark.
    seeds.set(id, withPromotedCopies(held, device.servingTotals ?? [], device, NaN, undefined));
  }
  return seeds;
}
