import { Counter, Gauge, type Registry } from 'prom-client';
import { DEVICE_REPORT_LABELS, DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DeviceReport, ReportRole, ServingDelta, ServingTotal } from './report-history.ts';

type Label = (typeof DEVICE_REPORT_LABELS)[number];

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
 * rows (predictions and failed requests), the candidate's shadow rows (run and failed). Sides
 * without a model or without rows add nothing.
 */
export function servingSides(serving: Pick<ServingDelta, 'active' | 'candidate' | 'predictions' | 'errors' | 'shadowRows' | 'shadowErrors'>): { ref: { model: string; version: string }; role: ReportRole; rows: number; errors: number }[] {
  const sides = [
    { ref: serving.active, role: 'active' as const, rows: serving.predictions + serving.errors, errors: serving.errors },
    { ref: serving.candidate, role: 'candidate' as const, rows: serving.shadowRows + serving.shadowErrors, errors: serving.shadowErrors },
  ];
  return sides.flatMap(({ ref, ...side }) => (ref && side.rows > 0 ? [{ ref: { model: ref.model, version: ref.version }, ...side }] : []));
}

/** Models (each as candidate and active) whose series one device keeps; the least recently reported go first. */
export const MAX_EXPORTED_MODELS_PER_DEVICE = 8;

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
export class ReportMetricsExporter {
  readonly #gauges: Record<'accuracy' | 'mse' | 'latencyP50' | 'latencyP95' | 'latencyP99' | 'errorRatio', Gauge<Label>>;
  readonly #counters: Record<'predictions' | 'errors' | 'reports', Counter<Label>>;
  /** Per device, per model and role, the label set it exports now and its last report (in order of last report). */
  readonly #exported = new Map<string, Map<string, { labels: Record<Label, string>; report?: DeviceReport }>>();
  /**
   * Revoked devices (ids are never reused): a heartbeat or report read before the revocation
   * and exported after it would otherwise bring the device's series back, until a restart.
   */
  readonly #forgotten = new Set<string>();

  constructor(registry: Registry) {
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
    };
    this.#counters = {
      predictions: counter(DEVICE_REPORT_METRICS.predictions, 'Rows the device predicted with the model: benchmark holdout rows, and rows served (active) or run in shadow (candidate)'),
      errors: counter(DEVICE_REPORT_METRICS.errors, 'Failed predictions on the device: failed requests (active), failed shadow rows (candidate)'),
      reports: counter(DEVICE_REPORT_METRICS.reports, 'Benchmark reports received from the device for the model'),
    };
  }

  /** Drops every device series (a deposed leader stops exporting what the new leader now ingests). */
  reset(): void {
    for (const metric of this.#metrics()) metric.reset();
    this.#exported.clear();
  }

  /**
   * Exports afresh (after reset) what the store kept, in the order it arrived: each live device's
   * latest benchmark per model, and what its heartbeats served per model and role (the totals
   * its counters had), read back when this server starts or becomes the leader. Without them a
   * restart leaves a rollout under way with no device series until every device benchmarks
   * again, which it does once per candidate, and the counters lose what was served before it
   * (a candidate's shadow errors: the candidate-errors check would pass what it failed).
   */
  restore(entries: readonly (DeviceReport | DeviceServingTotal)[], slots: ReadonlyMap<string, DeviceSlotRefs> = new Map()): void {
    this.reset();
    for (const entry of entries) {
      if (!('total' in entry)) {
        this.observe(entry);
        continue;
      }
      const { deviceId, total } = entry;
      this.#addServing({ model: total.model, version: total.version, role: total.role, cohort: total.cohort, device: deviceId }, total.predictions, total.errors, total.ratio);
    }
    for (const [deviceId, deviceSlots] of slots) this.keepSlots(deviceId, deviceSlots);
  }

  /**
   * Keeps the device's series to the models it holds now. A promoted candidate's numbers also
   * become its `active` series (the same model measured on the same holdout), and its candidate
   * series stays (the last pilot's measurement, which the dashboards compare with the baseline);
   * a dropped candidate's series go, and so does an active version replaced otherwise, until the
   * device benchmarks again: they no longer show in Grafana, or as a relative check's baseline.
   */
  keepSlots(deviceId: string, slots: DeviceSlotRefs): void {
    const device = this.#exported.get(deviceId);
    if (!device) return;
    const holds = (held: DeviceSlotRefs['active'], labels: Record<Label, string>) => held !== null && held.model === labels.model && held.version === labels.version;
    for (const { labels, report } of [...device.values()]) {
      const active = device.get(`${labels.model}\u0000active`)?.labels;
      const promoted = labels.role === 'candidate' && holds(slots.active, labels) && !(active && holds(slots.active, active));
      if (promoted && report) this.#export({ ...report, role: 'active' }, { count: false });
    }
    for (const [key, { labels }] of device) {
      if (labels.role === 'active' ? holds(slots.active, labels) : holds(slots.candidate, labels) || holds(slots.active, labels)) continue;
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
    this.#export(report, { count: true });
  }

  /**
   * What a device served since its previous heartbeat: rows its active model predicted and
   * failed (`errors`, 5xx), and rows its candidate ran in shadow and failed. They add to the
   * model's prediction and error counters, and set its error ratio over that interval, so the
   * error checks see the field's errors, not only the benchmarks' (where a failure is a
   * benchmark-failed answer, which fails a rollout on its own).
   */
  observeServing(serving: ServingDelta): void {
    for (const { ref, role, rows, errors } of servingSides(serving)) {
      this.#addServing({ model: ref.model, version: ref.version, role, cohort: serving.cohort, device: serving.deviceId }, rows, errors, errors / rows);
    }
  }

  /** Adds served rows and errors to the label set's counters and sets its error ratio. */
  #addServing(labels: Record<Label, string>, rows: number, errors: number, ratio: number): void {
    if (!this.#track(labels)) return;
    this.#gauges.errorRatio.set(labels, ratio);
    this.#counters.predictions.inc(labels, rows);
    this.#counters.errors.inc(labels, errors);
  }

  /** Sets the report's gauges; `count`: also adds it to the counters (a copy made at promotion is no new report). */
  #export(report: DeviceReport, options: { count: boolean }): void {
    const labels: Record<Label, string> = { model: report.model, version: report.version, role: report.role, cohort: report.cohort, device: report.deviceId };
    if (!this.#track(labels, report)) return;
    if (report.accuracy !== null) this.#gauges.accuracy.set(labels, report.accuracy);
    if (report.mse !== undefined && report.mse !== null) this.#gauges.mse.set(labels, report.mse);
    this.#gauges.latencyP50.set(labels, report.latencyMs.p50 / 1000);
    this.#gauges.latencyP95.set(labels, report.latencyMs.p95 / 1000);
    this.#gauges.latencyP99.set(labels, report.latencyMs.p99 / 1000);
    if (report.predictions > 0) this.#gauges.errorRatio.set(labels, report.errors / report.predictions);
    // A copy's counters are there (at what they were, or 0) but count nothing new.
    this.#counters.predictions.inc(labels, options.count ? report.predictions : 0);
    this.#counters.errors.inc(labels, options.count ? report.errors : 0);
    this.#counters.reports.inc(labels, options.count ? 1 : 0);
  }

  /** Makes `labels` the device's label set for its model and role, removing what it replaces or evicts; false for a revoked device (export nothing). */
  #track(labels: Record<Label, string>, report?: DeviceReport): boolean {
    if (this.#forgotten.has(labels.device)) return false;
    let device = this.#exported.get(labels.device);
    if (!device) this.#exported.set(labels.device, (device = new Map()));
    const key = `${labels.model}\u0000${labels.role}`;
    const entry = device.get(key);
    const previous = entry?.labels;
    device.delete(key); // re-inserted last: the map's order is the order of last report
    const replaced = previous !== undefined && (previous.version !== labels.version || previous.cohort !== labels.cohort);
    if (replaced) this.#remove(previous);
    // Serving numbers keep the label set's last benchmark (what a promotion copies).
    device.set(key, { labels, report: report ?? (replaced ? undefined : entry?.report) });
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

  #remove(labels: Record<Label, string>): void {
    for (const metric of this.#metrics()) metric.remove(labels);
  }

  #metrics(): (Gauge<Label> | Counter<Label>)[] {
    return [...Object.values(this.#gauges), ...Object.values(this.#counters)];
  }
}
