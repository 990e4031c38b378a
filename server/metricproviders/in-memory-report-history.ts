import type { DeviceReport, ReportHistory, ReportQuery } from './report-history.ts';

/** ReportHistory held in memory, for tests and the embedded demo. Keeps at most `limit` reports. */
export class InMemoryReportHistory implements ReportHistory {
  readonly #reports: DeviceReport[] = [];
  readonly #limit: number;

  constructor(options: { limit?: number } = {}) {
    this.#limit = options.limit ?? 100_000;
  }

  add(...reports: DeviceReport[]): void {
    for (const report of reports) {
      let at = this.#reports.length;
      while (at > 0 && this.#reports[at - 1]!.ts.getTime() > report.ts.getTime()) at -= 1;
      this.#reports.splice(at, 0, report);
    }
    if (this.#reports.length > this.#limit) this.#reports.splice(0, this.#reports.length - this.#limit);
  }

  async reports(query: ReportQuery): Promise<readonly DeviceReport[]> {
    const since = query.since.getTime();
    const until = query.until.getTime();
    return this.#reports.filter((report) => {
      const t = report.ts.getTime();
      return t >= since && t <= until && (query.model === undefined || report.model === query.model);
    });
  }
}
