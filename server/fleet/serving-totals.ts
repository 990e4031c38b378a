import type { ReportTotal, ServingDelta, ServingTotal } from '../metricproviders/report-history.ts';
import { servingSides, type DeviceReportTotal, type DeviceServingTotal, type ReportMetricsExporter } from '../metricproviders/report-metrics-exporter.ts';
import type { DeviceSlots } from '../store/repositories/devices-repository.ts';
import type { FleetRepositories } from './fleet-store.ts';
import { heldSince, latestReportOf, seedReportTotals, slotsHold } from './report-totals.ts';

/**
 * A device's served totals after a heartbeat's delta (what the exporter adds to its counters),
 * kept with the device so that a restart, or a standby becoming the leader, exports the same
 * counters rather than starting them again from what later heartbeats add.
 *
 * One total per model and role, as the exporter keeps one label set: the same version and
 * cohort add up, another replaces it (the exporter replaces the series too). Totals of models
 * the heartbeat's slots no longer hold go (as reconcileSlots removes their series: a candidate
 * that is dropped and comes back later starts afresh there too); a promoted candidate's stays.
 * `measured`: the benchmark totals the heartbeat leaves (reportTotalsHeld with its sentAt); a
 * label set among them keeps its served total too, as the exporter keeps its whole series.
 */
export function servingTotalsAfter(totals: readonly ServingTotal[], delta: Pick<ServingDelta, 'cohort' | 'active' | 'candidate' | 'predictions' | 'errors' | 'shadowRows' | 'shadowErrors' | 'sentAt'> | null, slots: Pick<DeviceSlots, 'active' | 'candidate'>, at: string, measured: readonly ReportTotal[] = []): ServingTotal[] {
  const sameLabels = (a: ServingTotal, b: ReportTotal) => a.model === b.model && a.version === b.version && a.role === b.role && a.cohort === b.cohort;
  const next = totals.filter((total) => slotsHold(slots, total) || measured.some((kept) => sameLabels(total, kept)));
  const sentAt = delta?.sentAt?.getTime() ?? NaN;
  for (const { ref, role, rows, errors } of delta ? servingSides(delta) : []) {
    // Rows of a heartbeat sent before another label set of their model and role was benchmarked or
    // promoted do not replace it (nor count), as in the exporter's observeServing.
    const newer = measured.some((kept) => kept.model === ref.model && kept.role === role && (kept.version !== ref.version || kept.cohort !== delta!.cohort) && !(heldSince(kept) < sentAt));
    if (newer) continue;
    const index = next.findIndex((total) => total.model === ref.model && total.role === role);
    const same = index >= 0 && next[index]!.version === ref.version && next[index]!.cohort === delta!.cohort ? next[index]! : undefined;
    const total: ServingTotal = {
      model: ref.model,
      version: ref.version,
      role,
      cohort: delta!.cohort,
      predictions: (same?.predictions ?? 0) + rows,
      errors: (same?.errors ?? 0) + errors,
      ratio: errors / rows,
      at,
    };
    if (index >= 0) next.splice(index, 1);
    next.push(total);
  }
  return next;
}

/**
 * Exports afresh what the store kept (when this server starts or becomes the leader): each live
 * device's benchmark totals and served totals per model and role, then its slots (see
 * ReportMetricsExporter.restore: the benchmark totals stand as kept, with their times). Devices
 * with no benchmark totals kept yet (from before fleet migration 10) get them from their latest
 * benchmark per model they hold, written back so that retention cannot take those away.
 */
export async function restoreExports(exporter: ReportMetricsExporter, repos: Pick<FleetRepositories, 'reports' | 'devices'>): Promise<void> {
  const live = await repos.devices.list({ live: true });
  const untracked = live.filter((device) => device.reportTotals === null);
  const seeds = untracked.length > 0 ? await seedReportTotals(repos.reports, untracked) : new Map<string, ReportTotal[]>();
  for (const { id } of untracked) await repos.devices.seedReportTotals(id, seeds.get(id) ?? []);
  const devices = live.map((device) => ({ ...device, reportTotals: device.reportTotals ?? seeds.get(device.id) ?? [] }));
  exporter.restore(restoreEntries(devices), new Map(live.map((device) => [device.id, device] as const)));
}

/**
 * What the exporter restores, in the order the server received it: the devices' benchmark totals
 * (with their latest benchmark's arrival) and served totals (with their latest heartbeat's), so
 * a label set that replaced another before the restart replaces it again.
 */
export function restoreEntries(devices: readonly { id: string; reportTotals: readonly ReportTotal[]; servingTotals: readonly ServingTotal[] }[]): (DeviceReportTotal | DeviceServingTotal)[] {
  const timed: { at: number; order: number; entries: (DeviceReportTotal | DeviceServingTotal)[] }[] = [];
  for (const device of devices) {
    for (const total of device.reportTotals) {
      const counts = { predictions: total.predictions, errors: total.errors, reports: total.reports };
      timed.push({ at: Date.parse(total.at) || 0, order: timed.length, entries: [{ report: latestReportOf(device.id, total), counts, since: new Date(heldSince(total)) }] });
    }
  }
  for (const device of devices) {
    for (const total of device.servingTotals) timed.push({ at: Date.parse(total.at) || 0, order: timed.length, entries: [{ deviceId: device.id, total }] });
  }
  // Stable: equal times keep the order above (benchmarks first).
  timed.sort((a, b) => a.at - b.at || a.order - b.order);
  return timed.flatMap(({ entries }) => entries);
}
