import { Counter, Gauge, type Registry } from 'prom-client';
import { DEVICE_REPORT_LABELS, DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DeviceReport, ReportRole, ServingDelta, ServingTotal } from './report-history.ts';

type Label = (typeof DEVICE_REPORT_LABELS)[number];
/** A label set of the exported series: `fleet` only when the exporter was given one. */
type Labels = Record<Exclude<Label, 'fleet'>, string> & { fleet?: string };

/** What a device holds in its slots, as far as its series go. */
export interface DeviceSlotRefs {
  readonly active: { readonly model: string; readonly version: string } | null;
  readonly candidate: { readonly model: string; readonly version: string } | null;
}

/** A device's served totals for one label set, as restore() takes them back from the store. */
export interface DeviceServingTotal {
  readonly deviceId: string;
  readonly total: ServingTotal;
}

/**
 * The rows and errors a serving delta adds to each side's label set: the active model's served
 * rows (predicted and failed), the candidate's shadow rows (run and failed). Sides
 * without a model or without rows add nothing.
 */
export function servingSides(serving: Pick<ServingDelta, 'active' | 'candidate' | 'predictions' | 'errors' | 'shadowRows' | 'shadowErrors'>): { ref: { model: string; version: string }; role: ReportRole; rows: number; errors: number }[] {
  const sides = [
    { ref: serving.active, role: 'active' as const, rows: serving.predictions + serving.errors, errors: serving.errors },
    { ref: serving.candidate, role: 'candidate' as const, rows: serving.shadowRows + serving.shadowErrors, errors: serving.shadowErrors },
  ];
  return sides.flatMap(({ ref, ...side }) => (ref && side.rows > 0 ? [{ ref: { model: ref.model, version: ref.version }, ...side }] : []));
}

/**
 * A device's benchmark totals for one label set, as restore() takes them back from the store: the
 * latest report, what all of them counted, and since when the device holds it (its clock: the
 * report's time, or the answer that promoted it; the report's time without it).
 */
export interface DeviceReportTotal {
  readonly report: DeviceReport;
  readonly counts: ReportCounts;
  readonly since?: Date;
}

/** What a benchmark (or several) adds to a label set's counters. */
export interface ReportCounts {
  readonly predictions: number;
  readonly errors: number;
  readonly reports: number;
}

const NO_COUNTS: ReportCounts = { predictions: 0, errors: 0, reports: 0 };

/**
 * One exported label set of a device: its labels, its last benchmark, and since when (the
 * device's clock, ms) the device is known to hold it: its latest benchmark, or the answer that
 * promoted it; -Infinity when only heartbeats (which hold it by definition) built it.
 */
interface ExportedEntry {
  labels: Labels;
  report?: DeviceReport;
  since: number;
}

function holds(held: DeviceSlotRefs['active'], labels: { model: string; version: string }): boolean {
  return held !== null && held.model === labels.model && held.version === labels.version;
}

/** Models (each as candidate and active) whose series one device keeps; the least recently reported go first. */
export const MAX_EXPORTED_MODELS_PER_DEVICE = 8;

/**
 * How long a removed label set's removal time is kept (withdrawnAt): beyond the 5 minutes an
 * instant selector looks back, a report from before the removal is out of its sight anyway.
 */
export const WITHDRAWALS_KEPT_MS = 10 * 60_000;

/** Which device label sets the server stopped exporting, and when (the builtin provider's staleness, see withdrawnAt). */
export interface ExportedSeriesWithdrawals {
  withdrawnAt(labels: Readonly<Record<string, string>>): number | undefined;
}

/** A device label set's identity (its fleet label is the exporter's own). */
function labelSetKey(labels: Readonly<Record<string, string | undefined>>): string {
  return JSON.stringify([labels.model, labels.version, labels.role, labels.cohort, labels.device]);
}

/**
 * Exports per-device reports on the server's /metrics with the names and labels the builtin
 * provider synthesizes from report history, so the same analysis queries (and the relative
 * checks) run against a real Prometheus that scrapes the server. The server calls observe() for
 * each ingested benchmark report.
 *
 * The series stay bounded by the fleet, not its history: a device keeps one label set per model
 * and role (its latest version and cohort; the previous one's series are removed), at most
 * MAX_EXPORTED_MODELS_PER_DEVICE models, and a revoked device's series go with it.
 */
export class ReportMetricsExporter implements ExportedSeriesWithdrawals {
  readonly #gauges: Record<'accuracy' | 'mse' | 'latencyP50' | 'latencyP95' | 'latencyP99' | 'errorRatio' | 'reportTimestamp', Gauge<Label>>;
  readonly #counters: Record<'predictions' | 'servedPredictions' | 'errors' | 'reports', Counter<Label>>;
  /** Per device, per model and role, the label set it exports now and its last report (in order of last report). */
  readonly #exported = new Map<string, Map<string, ExportedEntry>>();
  /**
   * Revoked devices (ids are never reused): a heartbeat or report read before the revocation
   * and exported after it would otherwise bring the device's series back, until a restart.
   */
  readonly #forgotten = new Set<string>();
  /** Label sets removed within WITHDRAWALS_KEPT_MS, with when (ms), oldest first. */
  readonly #removedAt = new Map<string, number>();
  /** When restore() last exported what the store kept (start, takeover); undefined before. */
  #restoredAt: number | undefined;
  readonly #now: () => number;

  /** The fleet label of every series (see DEVICE_REPORT_LABELS); none when undefined. */
  readonly #fleet: string | undefined;

  constructor(registry: Registry, fleet?: string, options: { now?: () => number } = {}) {
    this.#fleet = fleet;
    this.#now = options.now ?? Date.now;
    const labelNames = [...DEVICE_REPORT_LABELS];
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers: [registry] });
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers: [registry] });
    this.#gauges = {
      accuracy: gauge(DEVICE_REPORT_METRICS.accuracy, 'Holdout accuracy of the model on the device (latest report), ratio'),
      mse: gauge(DEVICE_REPORT_METRICS.mse, 'Holdout mean squared error of the (regression) model on the device (latest report), label units squared'),
      latencyP50: gauge(DEVICE_REPORT_METRICS.latencyP50, 'Median prediction latency on the device (latest report)'),
      latencyP95: gauge(DEVICE_REPORT_METRICS.latencyP95, '95th percentile prediction latency on the device (latest report)'),
      latencyP99: gauge(DEVICE_REPORT_METRICS.latencyP99, '99th percentile prediction latency on the device (latest report)'),
      errorRatio: gauge(DEVICE_REPORT_METRICS.errorRatio, 'Failed over attempted predictions in the latest heartbeat interval with traffic (0 from a benchmark)'),
      reportTimestamp: gauge(DEVICE_REPORT_METRICS.reportTimestamp, 'When the server received the benchmark behind these gauges (the latest report; for served rows alone, their heartbeat), Unix seconds: relative checks count only reports since the rollout started'),
    };
    this.#counters = {
      predictions: counter(DEVICE_REPORT_METRICS.predictions, 'Rows the device predicted with the model: benchmark holdout rows, and rows served (active) or run in shadow (candidate)'),
      servedPredictions: counter(DEVICE_REPORT_METRICS.servedPredictions, 'Rows the device served with the model (active) or ran in shadow (candidate), failed ones included; no benchmark rows'),
      errors: counter(DEVICE_REPORT_METRICS.errors, 'Rows whose prediction failed on the device: served rows (active), shadow-run rows (candidate)'),
      reports: counter(DEVICE_REPORT_METRICS.reports, 'Benchmark reports received from the device for the model'),
    };
  }

  /** Drops every device series (a deposed leader stops exporting what the new leader now ingests). */
  reset(): void {
    for (const metric of this.#metrics()) metric.reset();
    this.#exported.clear();
    this.#removedAt.clear();
    this.#restoredAt = undefined;
  }

  /**
   * Since when (the server's clock, ms) the server no longer exports the device label set
   * `labels` names (model, version, role, cohort, device): when it removed it (a dropped or
   * replaced candidate, a version replaced, a model evicted, a revoked device), or, for one not
   * exported since the last restore(), that restore's time (the store brought back every label set
   * its device still held). undefined while it is exported, and before any restore (unknown).
   * Prometheus marks such a series stale at its next scrape; the builtin provider, which reads
   * the same reports from history, marks it stale here.
   */
  withdrawnAt(labels: Readonly<Record<string, string>>): number | undefined {
    const held = labels.device === undefined ? undefined : this.#exported.get(labels.device)?.get(`${labels.model}\u0000${labels.role}`);
    if (held && held.labels.version === labels.version && held.labels.cohort === labels.cohort) return undefined;
    return this.#removedAt.get(labelSetKey(labels)) ?? this.#restoredAt;
  }

  /**
   * Exports afresh (after reset) what the store kept, in the order it arrived: each live device's
   * benchmark totals per model and role (the latest benchmark's numbers, and what all of them
   * added to the counters), and what its heartbeats served per model and role, read back when
   * this server starts or becomes the leader. Without them a restart leaves a rollout under way
   * with no device series until every device benchmarks again, which it does once per candidate,
   * and the counters lose what was counted before it: Prometheus sees a counter reset, and
   * increase() counts the restored total again (a candidate's errors: the candidate-errors check
   * would fail what it passed, or pass what it failed).
   *
   * The benchmark totals stand as the store kept them, with their times: every removal of their
   * series was written with them when it happened (an answer's, and a heartbeat's under the time
   * rule of reconcileSlots), and so was a promotion's copy. The stored slots may be older than
   * they are (a heartbeat sent before a benchmark or promotion and read after it is stored all the
   * same), so they only take away series of served rows alone (a heartbeat's late rows). They make
   * no promotion's copy: the store keeps every copy live made (and seeds those of devices from
   * before it kept them, seedReportTotals), and a heartbeat showing a promotion read before its
   * answer made none live.
   */
  restore(entries: readonly (DeviceReport | DeviceReportTotal | DeviceServingTotal)[], slots: ReadonlyMap<string, DeviceSlotRefs> = new Map()): void {
    this.reset();
    this.#restoredAt = this.#now();
    for (const entry of entries) {
      if ('counts' in entry) {
        this.#export(entry.report, entry.counts, entry.since);
        continue;
      }
      if (!('total' in entry)) {
        this.observe(entry);
        continue;
      }
      const { deviceId, total } = entry;
      this.#addServing(this.#labels({ model: total.model, version: total.version, role: total.role, cohort: total.cohort, device: deviceId }), total.predictions, total.errors, total.ratio, new Date(total.at));
    }
    for (const [deviceId, deviceSlots] of slots) {
      const device = this.#exported.get(deviceId);
      if (!device) continue;
      this.#removeUnheld(device, deviceSlots, (entry) => entry.report === undefined);
    }
  }

  /**
   * Keeps the device's series to the models it holds now. A promoted candidate's numbers also
   * become its `active` series (the same model measured on the same holdout), and its candidate
   * series stays (the last pilot's measurement, which the dashboards compare with the baseline);
   * a dropped candidate's series go, and so does an active version replaced otherwise, until the
   * device benchmarks again: they no longer show in Grafana, or as a relative check's baseline.
   * `at`: the device's time of the answer that moved the slots (a promotion's copy is that new).
   */
  keepSlots(deviceId: string, slots: DeviceSlotRefs, at?: Date): void {
    const device = this.#exported.get(deviceId);
    if (!device) return;
    this.#copyPromoted(device, slots, at);
    this.#removeUnheld(device, slots, () => true);
  }

  /** Makes the active copy of each candidate the slots hold as active, unless its active series is measured already (reportTotalsMoved keeps the same copy). */
  #copyPromoted(device: Map<string, ExportedEntry>, slots: DeviceSlotRefs, at?: Date): void {
    for (const { labels, report } of [...device.values()]) {
      const active = device.get(`${labels.model}\u0000active`);
      // The active label set may already be there without numbers: restored from what the
      // promoted model served (the served totals come back before the slots are applied).
      const measured = active !== undefined && holds(slots.active, active.labels) && (active.report !== undefined || active.labels.cohort !== labels.cohort);
      const promoted = labels.role === 'candidate' && holds(slots.active, labels) && !measured;
      if (promoted && report) this.#export({ ...report, role: 'active' }, NO_COUNTS, at);
    }
  }

  /**
   * Keeps the device's series to the models a heartbeat shows it holds (a candidate it lost
   * without an answer saying so, e.g. its files damaged): series measured, or moved by an answer,
   * at or after the heartbeat's `sentAt` (the device's clock) stay, as a heartbeat read late is
   * older than they are. Removes only; promotions come with their answers.
   */
  reconcileSlots(deviceId: string, slots: DeviceSlotRefs, sentAt: Date): void {
    const device = this.#exported.get(deviceId);
    if (device) this.#removeUnheld(device, slots, (entry) => entry.since < sentAt.getTime());
  }

  /** The devices that have series now (to check against the store's live devices). */
  deviceIds(): string[] {
    return [...this.#exported.keys()];
  }

  #removeUnheld(device: Map<string, ExportedEntry>, slots: DeviceSlotRefs, removable: (entry: ExportedEntry) => boolean): void {
    for (const [key, entry] of device) {
      const { labels } = entry;
      if (labels.role === 'active' ? holds(slots.active, labels) : holds(slots.candidate, labels) || holds(slots.active, labels)) continue;
      if (!removable(entry)) continue;
      this.#remove(labels);
      device.delete(key);
    }
  }

  /** Removes a device's series (it was revoked), and exports none for it again. */
  forgetDevice(deviceId: string): void {
    this.#forgotten.add(deviceId);
    for (const { labels } of this.#exported.get(deviceId)?.values() ?? []) this.#remove(labels);
    this.#exported.delete(deviceId);
  }

  observe(report: DeviceReport): void {
    this.#export(report, { predictions: report.predictions, errors: report.errors, reports: 1 });
  }

  /**
   * What a device served since its previous heartbeat: rows its active model predicted and
   * failed (`errors`: its run threw or gave a non-finite output), and rows its candidate ran in shadow and failed. They add to the
   * model's prediction and error counters, and set its error ratio over that interval, so the
   * error checks see the field's errors, not only the benchmarks' (where a failure is a
   * benchmark-failed answer, which fails a rollout on its own).
   */
  observeServing(serving: ServingDelta): void {
    const sentAt = serving.sentAt?.getTime() ?? NaN;
    for (const { ref, role, rows, errors } of servingSides(serving)) {
      const labels = this.#labels({ model: ref.model, version: ref.version, role, cohort: serving.cohort, device: serving.deviceId });
      // A heartbeat read late (sent before the label set of its model and role was benchmarked or
      // promoted) must not replace that newer series: its rows are not exported (servingTotalsAfter drops them alike).
      const held = this.#exported.get(serving.deviceId)?.get(`${ref.model}\u0000${role}`);
      if (held && (held.labels.version !== labels.version || held.labels.cohort !== labels.cohort) && !(held.since < sentAt)) continue;
      this.#addServing(labels, rows, errors, errors / rows, serving.receivedAt ?? new Date());
    }
  }

  /**
   * Adds served rows and errors to the label set's counters and sets its error ratio. A label set
   * with no benchmark behind it (served rows alone, or a cohort changed since its benchmark) gets
   * `receivedAt` (the server's clock) as its report time: its error ratio is that new.
   */
  #addServing(labels: Labels, rows: number, errors: number, ratio: number, receivedAt: Date): void {
    if (!this.#track(labels)) return;
    this.#gauges.errorRatio.set(labels, ratio);
    if (this.#exported.get(labels.device)?.get(`${labels.model}\u0000${labels.role}`)?.report === undefined) this.#gauges.reportTimestamp.set(labels, receivedAt.getTime() / 1000);
    this.#counters.predictions.inc(labels, rows);
    this.#counters.servedPredictions.inc(labels, rows);
    this.#counters.errors.inc(labels, errors);
  }

  /**
   * Sets the report's gauges and adds `counts` to the counters (a copy made at promotion is no new
   * report: nothing; a restored total: all its benchmarks). `since`: when the device said so
   * (the report's time, or a promotion's answer).
   */
  #export(report: DeviceReport, counts: ReportCounts, since: Date = report.ts): void {
    const labels = this.#labels({ model: report.model, version: report.version, role: report.role, cohort: report.cohort, device: report.deviceId });
    if (!this.#track(labels, report, since)) return;
    if (report.accuracy !== null) this.#gauges.accuracy.set(labels, report.accuracy);
    if (report.mse !== undefined && report.mse !== null) this.#gauges.mse.set(labels, report.mse);
    this.#gauges.latencyP50.set(labels, report.latencyMs.p50 / 1000);
    this.#gauges.latencyP95.set(labels, report.latencyMs.p95 / 1000);
    this.#gauges.latencyP99.set(labels, report.latencyMs.p99 / 1000);
    if (report.predictions > 0) this.#gauges.errorRatio.set(labels, report.errors / report.predictions);
    // When the server received the report, also for a promotion's copy (the candidate's benchmark,
    // not the promotion): the gauges above are re-scraped as long as the label set stays, and this
    // tells which benchmark they show (a relative check keeps to those since its rollout's start,
    // on the server's clock: not the device's, which may be off).
    this.#gauges.reportTimestamp.set(labels, (report.receivedAt ?? report.ts).getTime() / 1000);
    // A copy's counters are there (at what they were, or 0) but count nothing new.
    this.#counters.predictions.inc(labels, counts.predictions);
    // A benchmark's holdout rows are no served rows: the series is there (at 0 until the device serves).
    this.#counters.servedPredictions.inc(labels, 0);
    this.#counters.errors.inc(labels, counts.errors);
    this.#counters.reports.inc(labels, counts.reports);
  }

  /** Makes `labels` the device's label set for its model and role, removing what it replaces or evicts; false for a revoked device (export nothing). */
  #track(labels: Labels, report?: DeviceReport, since?: Date): boolean {
    if (this.#forgotten.has(labels.device)) return false;
    let device = this.#exported.get(labels.device);
    if (!device) this.#exported.set(labels.device, (device = new Map()));
    const key = `${labels.model}\u0000${labels.role}`;
    const entry = device.get(key);
    const previous = entry?.labels;
    const replaced = previous !== undefined && (previous.version !== labels.version || previous.cohort !== labels.cohort);
    // Served rows of the same label set leave it where it is: only benchmarks (and promotions) make
    // a model recent, as the store evicts models by their benchmarks (reportTotalsAfter), so a
    // restart evicts the same model as live.
    if (entry && !replaced && report === undefined) return true;
    device.delete(key); // re-inserted last: the map's order is the order of last report
    if (replaced) this.#remove(previous);
    // Serving numbers keep the label set's last benchmark (what a promotion copies), and its time.
    const kept = replaced ? undefined : entry;
    const time = since?.getTime();
    device.set(key, { labels, report: report ?? kept?.report, since: Math.max(kept?.since ?? -Infinity, Number.isFinite(time) ? time! : -Infinity) });
    this.#removedAt.delete(labelSetKey(labels));
    const models = () => new Set([...device.values()].map((entry) => entry.labels.model));
    while (models().size > MAX_EXPORTED_MODELS_PER_DEVICE) {
      const oldest = device.values().next().value!.labels.model;
      for (const [entryKey, entry] of device) {
        if (entry.labels.model !== oldest) continue;
        this.#remove(entry.labels);
        device.delete(entryKey);
      }
    }
    return true;
  }

  #labels(labels: Omit<Labels, 'fleet'>): Labels {
    return this.#fleet === undefined ? labels : { ...labels, fleet: this.#fleet };
  }

  #remove(labels: Labels): void {
    for (const metric of this.#metrics()) metric.remove(labels);
    const now = this.#now();
    const key = labelSetKey(labels);
    this.#removedAt.delete(key); // re-inserted last: the map stays in time order
    this.#removedAt.set(key, now);
    for (const [oldKey, at] of this.#removedAt) {
      if (at > now - WITHDRAWALS_KEPT_MS) break;
      this.#removedAt.delete(oldKey);
    }
  }

  #metrics(): (Gauge<Label> | Counter<Label>)[] {
    return [...Object.values(this.#gauges), ...Object.values(this.#counters)];
  }
}
