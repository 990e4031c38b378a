import type { BenchmarkReport, ModelBenchmark } from '../../shared/protocol/payloads.ts';
import type { DeviceReport } from './report-history.ts';

/**
 * The DeviceReports (ReportHistory rows) of one protocol benchmark report: the candidate and,
 * when the device has one, its active model, measured side by side in the same run.
 *
 * - accuracy: the holdout accuracy (null for regression scores); mse: the holdout MSE (null for classifiers);
 * - predictions: the holdout rows the model predicted in the benchmark;
 * - errors: 0 — a benchmark whose predictions fail arrives as an assignment report with
 *   outcome `benchmark-failed`, which the store may record as a report with errors = rows.
 */
export function deviceReportsFromBenchmark(report: BenchmarkReport, cohort: string): DeviceReport[] {
  const ts = new Date(report.createdAt);
  const rows = report.holdout.rows;
  const toReport = (benchmark: ModelBenchmark): DeviceReport => ({
    model: benchmark.model,
    version: benchmark.version,
    role: benchmark.role,
    cohort,
    deviceId: report.deviceId,
    accuracy: 'accuracy' in benchmark.score ? benchmark.score.accuracy : null,
    mse: 'mse' in benchmark.score ? benchmark.score.mse : null,
    latencyMs: { p50: benchmark.latencyMs.p50, p95: benchmark.latencyMs.p95, p99: benchmark.latencyMs.p99 },
    errors: 0,
    predictions: rows,
    ts,
  });
  return [...(report.active ? [toReport(report.active)] : []), toReport(report.candidate)];
}
