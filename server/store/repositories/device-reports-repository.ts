import type { AssignmentReport, Report } from '../../../shared/protocol/payloads.ts';
import type { SqlExecutor } from '../sql-engine.ts';
import { fromJsonColumn, toJsonColumn } from './json-column.ts';
import { chunksOf, ID_CHUNK } from './id-chunks.ts';

/**
 * SQL true for a benchmark report that answers a replaced assignment: by the time it arrived, the
 * server had issued its device a newer candidate assignment, which the device did not refuse (one
 * measured earlier and delivered late from the device's outbox, say). Such a report is history, not
 * evidence: a rollout's analysis must not take an earlier assignment's numbers for its own
 * (docs/rollout-spec.md). Decided once, when the report arrives (the `evidence` column).
 * Parameters: the answered assignment's id, the device id, the arrival time (the server's ISO string).
 */
const REPLACED_ANSWER_SQL = `SELECT 1 FROM device_assignments answered
  JOIN device_assignments newer ON newer.device_id = answered.device_id AND newer.role = 'candidate' AND newer.issued_at > answered.issued_at AND newer.state <> 'refused'
  WHERE answered.id = ? AND answered.device_id = ? AND newer.issued_at <= ?`;

export interface StoredReport {
  report: Report;
  /** The device's cohort label when the report arrived. */
  cohort: string;
  receivedAt: string;
}

/** SQL for the raw history of device reports; a report id is stored once. */
export class DeviceReportsRepository {
  constructor(private readonly db: SqlExecutor) {}

  /**
   * False when the device already sent a report with this id (nothing is written). `evidence`:
   * false only for a benchmark that answers a replaced assignment (answersReplacedAssignment).
   */
  async insert(report: Report, cohort: string, receivedAt: string, evidence = true): Promise<boolean> {
    const model = report.kind === 'benchmark' ? report.candidate.model : report.model;
    const result = await this.db.run(
      `INSERT INTO device_reports (id, device_id, kind, model, assignment_id, cohort, created_at, received_at, payload, evidence)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      [storedReportKey(report), report.deviceId, report.kind, model, report.assignmentId, cohort, new Date(report.createdAt).toISOString(), receivedAt, toJsonColumn(report), evidence ? 1 : 0],
    );
    return result.changes > 0;
  }

  /** Whether a benchmark arriving at `receivedAt` answers a replaced assignment (REPLACED_ANSWER_SQL): history, not evidence. */
  async answersReplacedAssignment(report: Report, receivedAt: string): Promise<boolean> {
    if (report.kind !== 'benchmark' || report.assignmentId === null) return false;
    return (await this.db.get(`${REPLACED_ANSWER_SQL} LIMIT 1`, [report.assignmentId, report.deviceId, receivedAt])) !== undefined;
  }

  /**
   * Reports of `kind` created (or, with clock 'server', received) within [since, until]
   * (inclusive), oldest first. Past `limit`
   * (default 100,000) the oldest are left out: a window's newest reports are what analysis needs.
   * `evidence`: only the reports that were evidence when they arrived (answersReplacedAssignment).
   */
  async list(query: { kind?: Report['kind']; model?: string; deviceId?: string; since?: Date; until?: Date; limit?: number; clock?: 'device' | 'server'; evidence?: boolean }): Promise<StoredReport[]> {
    // The device's clock (createdAt), or the server's (arrival): field devices' clocks drift.
    const time = query.clock === 'server' ? 'received_at' : 'created_at';
    const where: string[] = [];
    const params: (string | number)[] = [];
    const add = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    add('kind = ?', query.kind);
    add('model = ?', query.model);
    add('device_id = ?', query.deviceId);
    add(`${time} >= ?`, query.since?.toISOString());
    add(`${time} <= ?`, query.until?.toISOString());
    if (query.evidence) where.push('evidence = 1');
    params.push(query.limit ?? 100_000);
    const rows = await this.db.all(
      `SELECT payload, cohort, received_at FROM device_reports${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${time} DESC, id DESC LIMIT ?`,
      params,
    );
    return rows.reverse().map((row) => ({ report: fromJsonColumn<Report>(row.payload), cohort: String(row.cohort), receivedAt: String(row.received_at) }));
  }

  /**
   * Each live device's latest benchmark report per model (the model its candidate was of), by
   * arrival (the server's clock: a device's own may be off), oldest first: what the server exports
   * per device, rebuilt after a restart or failover (for devices whose benchmark totals the store
   * did not keep yet: see seedReportTotals). `deviceId`: that device's only. Only benchmarks that
   * were evidence when they arrived (answersReplacedAssignment): the others were never exported.
   */
  async latestBenchmarks(options: { deviceId?: string } = {}): Promise<StoredReport[]> {
    const device = options.deviceId === undefined ? '' : ' AND device_id = ?';
    const rows = await this.db.all(
      // One per device and model: two received in the same millisecond are told apart by the
      // device's own time, then the id (MAX(received_at) alone returned both).
      `SELECT r.payload, r.cohort, r.received_at FROM (
         SELECT payload, cohort, received_at, device_id, id,
           ROW_NUMBER() OVER (PARTITION BY device_id, model ORDER BY received_at DESC, created_at DESC, id DESC) AS newest
         FROM device_reports WHERE kind = 'benchmark' AND evidence = 1${device}
       ) r
       JOIN devices d ON d.id = r.device_id AND d.revoked_at IS NULL
       WHERE r.newest = 1 ORDER BY r.received_at, r.id`,
      options.deviceId === undefined ? [] : [options.deviceId],
    );
    return rows.map((row) => ({ report: fromJsonColumn<Report>(row.payload), cohort: String(row.cohort), receivedAt: String(row.received_at) }));
  }

  /** The device's first answer (assignment report) to an assignment or command id: whether it took it. */
  async findAnswer(assignmentId: string, deviceId: string): Promise<AssignmentReport | undefined> {
    const row = await this.db.get(
      "SELECT payload FROM device_reports WHERE kind = 'assignment' AND assignment_id = ? AND device_id = ? ORDER BY created_at, id LIMIT 1",
      [assignmentId, deviceId],
    );
    return row ? fromJsonColumn<AssignmentReport>(row.payload) : undefined;
  }

  /** findAnswer for many devices at once: each device's first answer to the assignment, keyed by device. */
  async findAnswers(assignmentId: string, deviceIds: readonly string[]): Promise<Map<string, AssignmentReport>> {
    const found = new Map<string, AssignmentReport>();
    for (const chunk of chunksOf([...new Set(deviceIds)], ID_CHUNK)) {
      const rows = await this.db.all(
        `SELECT device_id, payload FROM device_reports WHERE kind = 'assignment' AND assignment_id = ? AND device_id IN (${chunk.map(() => '?').join(', ')}) ORDER BY created_at, id`,
        [assignmentId, ...chunk],
      );
      for (const row of rows) if (!found.has(String(row.device_id))) found.set(String(row.device_id), fromJsonColumn<AssignmentReport>(row.payload));
    }
    return found;
  }

  /** Deletes reports that arrived before `cutoff`; returns how many. */
  async deleteReceivedBefore(cutoff: Date): Promise<number> {
    return (await this.db.run('DELETE FROM device_reports WHERE received_at < ?', [cutoff.toISOString()])).changes;
  }

  async count(): Promise<number> {
    return Number((await this.db.get('SELECT COUNT(*) AS n FROM device_reports'))?.n ?? 0);
  }
}

/**
 * A report's key in device_reports: its id within its device (fleet migration 6). Ids are the
 * device's own; another device may use the same one, by chance or to have this device's dropped.
 */
export function storedReportKey(report: Pick<Report, 'deviceId' | 'id'>): string {
  return `${report.deviceId}/${report.id}`;
}
