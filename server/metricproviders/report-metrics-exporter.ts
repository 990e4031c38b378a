import { Counter, Gauge, type Registry } from 'prom-client';
import { DEVICE_REPORT_LABELS, DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DeviceReport } from './report-history.ts';

type Label = (typeof DEVICE_REPORT_LABELS)[number];

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
  /** Per device, per model and role, the label set it exports now (in order of last report). */
  readonly #exported = new Map<string, Map<string, Record<Label, string>>>();

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
      errorRatio: gauge(DEVICE_REPORT_METRICS.errorRatio, 'Failed predictions over predictions in the latest report window'),
    };
    this.#counters = {
      predictions: counter(DEVICE_REPORT_METRICS.predictions, 'Holdout rows the device predicted with the model in its benchmarks'),
      errors: counter(DEVICE_REPORT_METRICS.errors, 'Predictions that failed on the device'),
      reports: counter(DEVICE_REPORT_METRICS.reports, 'Benchmark reports received from the device for the model'),
    };
  }

  /** Drops every device series (a deposed leader stops exporting what the new leader now ingests). */
  reset(): void {
    for (const metric of this.#metrics()) metric.reset();
    this.#exported.clear();
  }

  /**
   * Exports `reports` afresh (after reset): each live device's latest benchmark per model, read
   * back from the store when this server starts or becomes the leader. Without it a restart
   * leaves a rollout under way with no device series until every device benchmarks again,
   * which it does once per candidate.
   */
  restore(reports: readonly DeviceReport[]): void {
    this.reset();
    for (const report of reports) this.observe(report);
  }

  /** Removes a device's series (it was revoked). */
  forgetDevice(deviceId: string): void {
    for (const labels of this.#exported.get(deviceId)?.values() ?? []) this.#remove(labels);
    this.#exported.delete(deviceId);
  }

  observe(report: DeviceReport): void {
    const labels: Record<Label, string> = { model: report.model, version: report.version, role: report.role, cohort: report.cohort, device: report.deviceId };
    this.#track(labels);
    if (report.accuracy !== null) this.#gauges.accuracy.set(labels, report.accuracy);
    if (report.mse !== undefined && report.mse !== null) this.#gauges.mse.set(labels, report.mse);
    this.#gauges.latencyP50.set(labels, report.latencyMs.p50 / 1000);
    this.#gauges.latencyP95.set(labels, report.latencyMs.p95 / 1000);
    this.#gauges.latencyP99.set(labels, report.latencyMs.p99 / 1000);
    if (report.predictions > 0) this.#gauges.errorRatio.set(labels, report.errors / report.predictions);
    this.#counters.predictions.inc(labels, report.predictions);
    this.#counters.errors.inc(labels, report.errors);
    this.#counters.reports.inc(labels, 1);
  }

  /** Makes `labels` the device's label set for its model and role, removing what it replaces or evicts. */
  #track(labels: Record<Label, string>): void {
    let device = this.#exported.get(labels.device);
    if (!device) this.#exported.set(labels.device, (device = new Map()));
    const key = `${labels.model}\u0000${labels.role}`;
    const previous = device.get(key);
    device.delete(key); // re-inserted last: the map's order is the order of last report
    if (previous && (previous.version !== labels.version || previous.cohort !== labels.cohort)) this.#remove(previous);
    device.set(key, labels);
    const models = () => new Set([...device.values()].map((entry) => entry.model));
    while (models().size > MAX_EXPORTED_MODELS_PER_DEVICE) {
      const oldest = device.values().next().value!.model;
      for (const [entryKey, entry] of device) {
        if (entry.model !== oldest) continue;
        this.#remove(entry);
        device.delete(entryKey);
      }
    }
  }

  #remove(labels: Record<Label, string>): void {
    for (const metric of this.#metrics()) metric.remove(labels);
  }

  #metrics(): (Gauge<Label> | Counter<Label>)[] {
    return [...Object.values(this.#gauges), ...Object.values(this.#counters)];
  }
}
