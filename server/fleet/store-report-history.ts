import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { deviceReportsFromBenchmark } from '../metricproviders/benchmark-report-adapter.ts';
import type { DeviceReport, ReportHistory, ReportQuery } from '../metricproviders/report-history.ts';
import type { FleetStore } from './fleet-store.ts';

/**
 * ReportHistory (for the builtin metric provider) over the stored benchmark reports: each
 * report yields its candidate's and its active model's DeviceReport, with the cohort the device
 * had when the report arrived.
 */
export class StoreReportHistory implements ReportHistory {
  constructor(private readonly fleet: FleetStore) {}

  async reports(query: ReportQuery): Promise<readonly DeviceReport[]> {
    const stored = await this.fleet.repos.reports.list({ kind: 'benchmark', since: query.since, until: query.until });
    const reports = stored.flatMap(({ report, cohort }) => deviceReportsFromBenchmark(report as BenchmarkReport, cohort));
    return query.model === undefined ? reports : reports.filter((report) => report.model === query.model);
  }
}
