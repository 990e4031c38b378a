import { Counter, Gauge, type Registry } from 'prom-client';
import { DEVICE_REPORT_LABELS, DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import type { DeviceReport } from './report-history.ts';

type Label = (typeof DEVICE_REPORT_LABELS)[number];

/**
 * Exports per-device reports on the server's /metrics with the names and labels the builtin
 * provider synthesizes from report history, so the same analysis queries (and the relative
 * checks) run against a real Prometheus that scrapes the server. The server calls observe() for
 * each ingested benchmark report.
 */
export class ReportMetricsExporter {
  readonly #gauges: Record<'accuracy' | 'latencyP50' | 'latencyP95' | 'latencyP99' | 'errorRatio', Gauge<Label>>;
  readonly #counters: Record<'predictions' | 'errors' | 'reports', Counter<Label>>;

  constructor(registry: Registry) {
    const labelNames = [...DEVICE_REPORT_LABELS];
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers: [registry] });
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers: [registry] });
    this.#gauges = {
      accuracy: gauge(DEVICE_REPORT_METRICS.accuracy, 'Holdout accuracy of the model on the device (latest report), ratio'),
      latencyP50: gauge(DEVICE_REPORT_METRICS.latencyP50, 'Median prediction latency on the device (latest report)'),
      latencyP95: gauge(DEVICE_REPORT_METRICS.latencyP95, '95th percentile prediction latency on the device (latest report)'),
      latencyP99: gauge(DEVICE_REPORT_METRICS.latencyP99, '99th percentile prediction latency on the device (latest report)'),
      errorRatio: gauge(DEVICE_REPORT_METRICS.errorRatio, 'Failed predictions over predictions in the latest report window'),
    };
    this.#counters = {
      predictions: counter(DEVICE_REPORT_METRICS.predictions, 'Predictions the device made with the model'),
      errors: counter(DEVICE_REPORT_METRICS.errors, 'Predictions that failed on the device'),
      reports: counter(DEVICE_REPORT_METRICS.reports, 'Benchmark reports received from the device for the model'),
    };
  }

  /** Drops every device series (a deposed leader stops exporting what the new leader now ingests). */
  reset(): void {
    for (const metric of [...Object.values(this.#gauges), ...Object.values(this.#counters)]) metric.reset();
  }

  observe(report: DeviceReport): void {
    const labels: Record<Label, string> = { model: report.model, version: report.version, role: report.role, cohort: report.cohort, device: report.deviceId };
    if (report.accuracy !== null) this.#gauges.accuracy.set(labels, report.accuracy);
    this.#gauges.latencyP50.set(labels, report.latencyMs.p50 / 1000);
    this.#gauges.latencyP95.set(labels, report.latencyMs.p95 / 1000);
    this.#gauges.latencyP99.set(labels, report.latencyMs.p99 / 1000);
    if (report.predictions > 0) this.#gauges.errorRatio.set(labels, report.errors / report.predictions);
    this.#counters.predictions.inc(labels, report.predictions);
    this.#counters.errors.inc(labels, report.errors);
    this.#counters.reports.inc(labels, 1);
  }
}
