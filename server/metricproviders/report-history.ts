/**
 * Per-device benchmark reports, as the builtin provider and the relative checks read them. The
 * server's store implements ReportHistory over its report table (one DeviceReport per model
 * measured in a benchmark report: the candidate and, side by side, the active model);
 * InMemoryReportHistory is the implementation for tests and the embedded demo.
 */
export type ReportRole = 'candidate' | 'active';

export interface DeviceReport {
  readonly model: string;
  readonly version: string;
  readonly role: ReportRole;
  /** The device's cohort when it reported (e.g. `pilot`, a rollout step, or `fleet`). */
  readonly cohort: string;
  readonly deviceId: string;
  /** Holdout accuracy as a ratio in [0, 1]; null for regression models. */
  readonly accuracy: number | null;
  /** Holdout mean squared error; null (or absent) for classifiers. */
  readonly mse?: number | null;
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number };
  /** Predictions that failed during the report's window. */
  readonly errors: number;
  /** Predictions made during the report's window. */
  readonly predictions: number;
  readonly ts: Date;
  /**
   * When the server received the report (its own clock); absent: `ts`. The report-time gauge
   * holds it, which relative checks compare with their rollout's start (the server's clock too):
   * a device whose clock is off must neither drop out of a rollout nor bring an earlier one's
   * benchmark into it.
   */
  readonly receivedAt?: Date;
}

/** What a device served between two heartbeats: rows predicted and failed, by its active model and (shadow) its candidate. */
export interface ServingDelta {
  readonly deviceId: string;
  readonly cohort: string;
  readonly active: { readonly model: string; readonly version: string } | null;
  readonly candidate: { readonly model: string; readonly version: string } | null;
  readonly predictions: number;
  readonly errors: number;
  readonly shadowRows: number;
  readonly shadowErrors: number;
  /**
   * When the device sent the heartbeat (its clock): its rows do not replace a label set of their
   * model and role held since then (a heartbeat read late is older than that benchmark or promotion).
   */
  readonly sentAt?: Date;
  /** When the server received the heartbeat (its clock, as the served totals keep it); absent: now. */
  readonly receivedAt?: Date;
}

/** One label set of a device's exported series (with the device's id). */
export interface ExportedLabelSet {
  readonly model: string;
  readonly version: string;
  readonly role: ReportRole;
  readonly cohort: string;
}

/**
 * What a device served with one model in one role, in total, since the label set (version and
 * cohort) began: the part of its exported counters that heartbeats, not benchmarks, added. The
 * server keeps it with the device (one per model and role), so a restart or a new leader exports
 * the same totals rather than starting them again at the benchmarks' counts.
 */
export interface ServingTotal extends ExportedLabelSet {
  /** Rows predicted: served and failed (active), run in shadow and failed (candidate). */
  readonly predictions: number;
  readonly errors: number;
  /** Errors over rows in the latest heartbeat interval with rows (the error-ratio gauge). */
  readonly ratio: number;
  /** When a heartbeat last added to it (the server's clock, ISO 8601). */
  readonly at: string;
}

export interface ReportQuery {
  readonly model?: string;
  /** Inclusive bounds. */
  readonly since: Date;
  readonly until: Date;
}

export interface ReportHistory {
  /** Reports in time order (oldest first). */
  reports(query: ReportQuery): Promise<readonly DeviceReport[]>;
}

/**
 * What a device's benchmarks added, in total, to one label set (model, role, version, cohort) of
 * its exported counters, and the latest one's numbers (the gauges). The server keeps it with the
 * device (one per model and role, as ServingTotal), so a restart or a new leader exports the same
 * counters: the newest benchmark alone is fewer rows and reports (a counter reset to Prometheus),
 * and retention may have deleted even that one while the device still holds the model.
 */
export interface ReportTotal extends ExportedLabelSet {
  /** Holdout rows predicted, and failed, by every benchmark of the label set. */
  readonly predictions: number;
  readonly errors: number;
  /** Benchmark reports counted. */
  readonly reports: number;
  /** The latest benchmark's numbers; `ts` is the device's time of it (ISO 8601). */
  readonly latest: {
    readonly accuracy: number | null;
    readonly mse: number | null;
    readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number };
    readonly predictions: number;
    readonly errors: number;
    readonly ts: string;
    /**
     * When the server received it (its clock, ISO 8601): the report-time gauge's value, kept by a
     * promotion's copy. Absent from totals stored by earlier servers: `at` stands for it.
     */
    readonly receivedAt?: string;
  };
  /** When the latest benchmark arrived, or the answer that made the total (the server's clock, ISO 8601). */
  readonly at: string;
  /**
   * Since when the device is known to hold the label set (its clock, ISO 8601), when that is not
   * `latest.ts`: a promoted candidate's copy (zero counts) holds it since the promotion's answer,
   * and a benchmark read after one with a later time keeps that time (as the exporter's series
   * do). A heartbeat sent before it, read late, does not take the total away (reportTotalsHeld).
   */
  readonly since?: string;
}
