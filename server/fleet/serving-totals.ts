import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport, ServingDelta, ServingTotal } from '../metricproviders/report-history.ts';
import { servingSides, type DeviceServingTotal, type ReportMetricsExporter } from '../metricproviders/report-metrics-exporter.ts';
import type { DeviceSlots } from '../store/repositories/devices-repository.ts';
import type { FleetRepositories } from './fleet-store.ts';

/**
 * A device's served totals after a heartbeat's delta (what the exporter adds to its counters),
 * kept with the device so that a restart, or a standby becoming the leader, exports the same
 * counters rather than starting them again from what later heartbeats add.
 *
 * One total per model and role, as the exporter keeps one label set: the same version and
 * cohort add up, another replaces it (the exporter replaces the series too). Totals of models
 * the heartbeat's slots no longer hold go (as keepSlots removes their series: a candidate that is
 * dropped and comes back later starts afresh there too); a promoted candidate's stays.
 */
export function servingTotalsAfter(totals: readonly ServingTotal[], delta: Pick<ServingDelta, 'cohort' | 'active' | 'candidate' | 'predictions' | 'errors' | 'shadowRows' | 'shadowErrors'> | null, slots: Pick<DeviceSlots, 'active' | 'candidate'>, at: string): ServingTotal[] {
  const next = totals.filter((total) => held(total, slots));
  for (const { ref, role, rows, errors } of delta ? servingSides(delta) : []) {
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

/** Whether the slots still hold the total's model (the exporter's keepSlots rule). */
function held(total: ServingTotal, slots: Pick<DeviceSlots, 'active' | 'candidate'>): boolean {
  const holds = (ref: { model: string; version: string } | null) => ref !== null && ref.model === total.model && ref.version === total.version;
  return total.role === 'active' ? holds(slots.active) : holds(slots.candidate) || holds(slots.active);
}

/**
 * Exports afresh what the store kept (when this server starts or becomes the leader): each live
 * device's latest benchmark per model and its served totals, then its slots.
 */
export async function restoreExports(exporter: ReportMetricsExporter, repos: Pick<FleetRepositories, 'reports' | 'devices'>): Promise<void> {
  const latest = await repos.reports.latestBenchmarks();
  const live = await repos.devices.list({ live: true });
  const benchmarks = latest.map(({ report, cohort, receivedAt }) => ({ reports: report.kind === 'benchmark' ? deviceReportsFromBenchmark(report, cohort) : [], receivedAt }));
  exporter.restore(restoreEntries(benchmarks, live), new Map(live.map((device) => [device.id, device] as const)));
}

/**
 * What the exporter restores, in the order the server received it: benchmarks (with their
 * arrival time) and the devices' served totals (with the time of their latest heartbeat), so a
 * label set that replaced another before the restart replaces it again.
 */
export function restoreEntries(benchmarks: readonly { reports: readonly DeviceReport[]; receivedAt: string }[], devices: readonly { id: string; servingTotals: readonly ServingTotal[] }[]): (DeviceReport | DeviceServingTotal)[] {
  const timed: { at: number; order: number; entries: (DeviceReport | DeviceServingTotal)[] }[] = [];
  for (const { reports, receivedAt } of benchmarks) timed.push({ at: Date.parse(receivedAt) || 0, order: timed.length, entries: [...reports] });
  for (const device of devices) {
    for (const total of device.servingTotals) timed.push({ at: Date.parse(total.at) || 0, order: timed.length, entries: [{ deviceId: device.id, total }] });
  }
  // Stable: equal times keep the order above (benchmarks first).
  timed.sort((a, b) => a.at - b.at || a.order - b.order);
  return timed.flatMap(({ entries }) => entries);
}
