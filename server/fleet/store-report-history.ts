import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport, ReportHistory, ReportQuery } from '../metricproviders/report-history.ts';
import type { FleetStore } from './fleet-store.ts';

/**
 * ReportHistory (for the builtin metric provider) over the stored benchmark reports: each
 * report yields its candidate's and its active model's DeviceReport, with the cohort the device
 * had when the report arrived, timed by its arrival (the server's clock, as Prometheus times
 * what it scrapes): a device whose clock is off still falls in the analysis window. Left out, as
 * the live export left them out: benchmarks that were not evidence when they arrived (they answered
 * a replaced assignment: DeviceReportsRepository.answersReplacedAssignment).
 */
export class StoreReportHistory implements ReportHistory {
  constructor(private readonly fleet: FleetStore) {}

  async reports(query: ReportQuery): Promise<readonly DeviceReport[]> {
    const stored = await this.fleet.repos.reports.list({ kind: 'benchmark', since: query.since, until: query.until, clock: 'server', evidence: true });
    const reports = stored.flatMap(({ report, cohort, receivedAt }) => deviceReportsFromBenchmark(report as BenchmarkReport, cohort).map((entry) => ({ ...entry, ts: new Date(receivedAt) })));
    return query.model === undefined ? reports : reports.filter((report) => report.model === query.model);
  }
}
