import type { SqlExecutor } from '../sql-engine.ts';

/**
 * `published` until the device answers; then the outcome of its assignment report (installed,
 * activated, rolled-back, candidate-dropped, refused, benchmark-failed). `superseded`: a newer
 * assignment to the device was recorded before it answered (its retained topic now holds that
 * one); an answer that still comes (the device had it in hand) replaces this state.
 */
export type AssignmentState = 'published' | 'superseded' | 'installed' | 'activated' | 'rolled-back' | 'candidate-dropped' | 'refused' | 'benchmark-failed';

export interface AssignmentRecord {
  id: string;
  deviceId: string;
  model: string;
  version: string;
  artifactId: string;
  role: 'candidate' | 'active';
  issuedAt: string;
  issuedBy: string;
  state: AssignmentState;
  reason: string | null;
  updatedAt: string;
}

/** SQL for the assignments the server published, one row per (assignment id, device). */
export class DeviceAssignmentsRepository {
  constructor(private readonly db: SqlExecutor) {}

  /** Re-publishing the same id to the same device keeps the first record. */
  async insert(record: AssignmentRecord): Promise<boolean> {
    const result = await this.db.run(
      `INSERT INTO device_assignments (id, device_id, model, version, artifact_id, role, issued_at, issued_by, state, reason, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, device_id) DO NOTHING`,
      [record.id, record.deviceId, record.model, record.version, record.artifactId, record.role, record.issuedAt, record.issuedBy, record.state, record.reason, record.updatedAt],
    );
    return result.changes > 0;
  }

  async get(id: string, deviceId: string): Promise<AssignmentRecord | undefined> {
    const row = await this.db.get('SELECT * FROM device_assignments WHERE id = ? AND device_id = ?', [id, deviceId]);
    return row ? toAssignment(row) : undefined;
  }

  /** Newest first. */
  async listForDevice(deviceId: string, limit = 100): Promise<AssignmentRecord[]> {
    const rows = await this.db.all('SELECT * FROM device_assignments WHERE device_id = ? ORDER BY issued_at DESC, id LIMIT ?', [deviceId, limit]);
    return rows.map(toAssignment);
  }

  /** Marks the device's unanswered assignments other than `newer` superseded by it; returns how many. */
  async supersedeUnanswered(deviceId: string, newer: string, at: string): Promise<number> {
    const sql = `UPDATE device_assignments SET state = 'superseded', reason = ?, updated_at = ? WHERE device_id = ? AND state = 'published' AND id <> ?`;
    return (await this.db.run(sql, [`replaced by assignment ${newer} before the device answered`, at, deviceId, newer])).changes;
  }

  /** Records the device's answer; false when there is no such assignment. */
  async setOutcome(id: string, deviceId: string, state: AssignmentState, reason: string | null, at: string): Promise<boolean> {
    return (await this.db.run('UPDATE device_assignments SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND device_id = ?', [state, reason, at, id, deviceId])).changes > 0;
  }

  /**
   * Deletes the records of assignments issued before `cutoff` that their device answered, or
   * whose device is revoked (the answers themselves are device reports, deleted after the same
   * time). Kept: one still unanswered (its device, offline since, may answer it when it comes
   * back), and the one each device holds retained (republished at every start, and taken again by
   * a device restoring a lost model). The retained one is matched in its stored JSON by id, the
   * same way on both engines; a false match only keeps a record longer.
   */
  async deleteAnsweredBefore(cutoff: Date): Promise<number> {
    const sql = `DELETE FROM device_assignments WHERE issued_at < ?
      AND (state <> 'published' OR device_id IN (SELECT id FROM devices WHERE revoked_at IS NOT NULL))
      AND NOT EXISTS (
        SELECT 1 FROM devices d WHERE d.id = device_assignments.device_id
        AND d.retained_assignment LIKE '%"id":"' || device_assignments.id || '"%'
      )`;
    return (await this.db.run(sql, [cutoff.toISOString()])).changes;
  }

  /** Whether the device was ever assigned artifact `artifactId` (in any state: a superseded assignment may still be downloading). */
  async wasAssigned(deviceId: string, artifactId: string): Promise<boolean> {
    return (await this.db.get('SELECT 1 AS found FROM device_assignments WHERE device_id = ? AND artifact_id = ? LIMIT 1', [deviceId, artifactId])) !== undefined;
  }

  /**
   * The stored manifests of the versions assigned to the device that mention `sha256` (as a file's
   * hash, or elsewhere: the caller reads the files). Matched by text, the same way on both engines.
   */
  async assignedManifestsMentioning(deviceId: string, sha256: string): Promise<unknown[]> {
    // Each assigned artifact's manifest read once, by index, however many assignments named it (a
    // join read it once per assignment row, and DISTINCT compared the texts).
    const sql = `SELECT v.manifest FROM model_versions v
      WHERE v.artifact_id IN (SELECT artifact_id FROM device_assignments WHERE device_id = ?) AND v.manifest LIKE ?`;
    return (await this.db.all(sql, [deviceId, `%${sha256}%`])).map((row) => row.manifest);
  }

  async count(): Promise<number> {
    return Number((await this.db.get('SELECT COUNT(*) AS n FROM device_assignments'))?.n ?? 0);
  }
}

function toAssignment(row: Record<string, unknown>): AssignmentRecord {
  return {
    id: String(row.id),
    deviceId: String(row.device_id),
    model: String(row.model),
    version: String(row.version),
    artifactId: String(row.artifact_id),
    role: String(row.role) as AssignmentRecord['role'],
    issuedAt: String(row.issued_at),
    issuedBy: String(row.issued_by),
    state: String(row.state) as AssignmentState,
    reason: row.reason === null || row.reason === undefined ? null : String(row.reason),
    updatedAt: String(row.updated_at),
  };
}
