import { DEVICE_REPORT_METRICS } from '../../../shared/metrics/rollout-names.ts';
import type { DeviceReport } from '../report-history.ts';
import { seriesKey, type Series, type SeriesPoint } from './series-set.ts';

/**
 * Series synthesized from report history, with the names and labels the server exports for
 * Prometheus (DEVICE_REPORT_METRICS; labels model, version, role, cohort, device, and fleet when given). Gauges get
 * one point per report. Counters accumulate the reports' counts over the fetched window (their
 * instant value), and each point keeps its report's count: increase() over a range is the sum of
 * the counts of the reports in it, whatever reports came before (see rangeFunction).
 */
export function reportSeries(reports: readonly DeviceReport[], fleet?: string): Series[] {
  const series = new Map<string, { labels: Record<string, string>; points: SeriesPoint[] }>();
  const push = (name: string, report: DeviceReport, value: number, counter: boolean) => {
    const labels = { __name__: name, model: report.model, version: report.version, role: report.role, cohort: report.cohort, device: report.deviceId, ...(fleet === undefined ? {} : { fleet }) };
    const key = seriesKey(labels);
    let entry = series.get(key);
    const t = report.ts.getTime();
    if (!entry) {
      entry = { labels, points: [] };
      series.set(key, entry);
    }
    const previous = entry.points.at(-1);
    entry.points.push(counter ? { t, v: (previous?.v ?? 0) + value, count: value } : { t, v: value });
  };
  const ordered = [...reports].sort((a, b) => a.ts.getTime() - b.ts.getTime());
  for (const report of ordered) {
    if (report.accuracy !== null) push(DEVICE_REPORT_METRICS.accuracy, report, report.accuracy, false);
    if (report.mse !== undefined && report.mse !== null) push(DEVICE_REPORT_METRICS.mse, report, report.mse, false);
    push(DEVICE_REPORT_METRICS.latencyP50, report, report.latencyMs.p50 / 1000, false);
    push(DEVICE_REPORT_METRICS.latencyP95, report, report.latencyMs.p95 / 1000, false);
    push(DEVICE_REPORT_METRICS.latencyP99, report, report.latencyMs.p99 / 1000, false);
    if (report.predictions > 0) push(DEVICE_REPORT_METRICS.errorRatio, report, report.errors / report.predictions, false);
    push(DEVICE_REPORT_METRICS.predictions, report, report.predictions, true);
    // Reports are benchmarks: holdout rows, none served (heartbeats' rows come from the server's series only).
    push(DEVICE_REPORT_METRICS.servedPredictions, report, 0, true);
    push(DEVICE_REPORT_METRICS.errors, report, report.errors, true);
    push(DEVICE_REPORT_METRICS.reports, report, 1, true);
    push(DEVICE_REPORT_METRICS.reportTimestamp, report, report.ts.getTime() / 1000, false);
  }
  return [...series.values()];
}
