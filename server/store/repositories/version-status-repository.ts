import type { VersionStatus } from '../../rollout/fleet-port.ts';
import type { SqlExecutor } from '../sql-engine.ts';

export interface VersionStatusChange {
  commandId: string;
  model: string;
  version: string;
  status: VersionStatus;
  reason: string;
  at: string;
}

/**
 * SQL for the version status changes rollouts and production-alias moves make (production,
 * failed, rolled-back, superseded, withdrawn), keyed by command id.
 */
export class VersionStatusRepository {
  constructor(private readonly db: SqlExecutor) {}

  /** False when a change with this command id was already recorded (nothing written). */
  async record(change: VersionStatusChange): Promise<boolean> {
    const { changes } = await this.db.run(
      'INSERT INTO version_status_changes (command_id, model, version, status, reason, at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING',
      // The reason quotes other systems (a metrics backend's error); PostgreSQL refuses a NUL in text.
      [change.commandId, change.model, change.version, change.status, change.reason.replaceAll('\u0000', '\uFFFD'), change.at],
    );
    return changes === 1;
  }

  /** The newest status change of a version, if any. */
  async current(model: string, version: string): Promise<VersionStatusChange | undefined> {
    const row = await this.db.get('SELECT * FROM version_status_changes WHERE model = ? AND version = ? ORDER BY at DESC, command_id DESC LIMIT 1', [model, version]);
    return row
      ? { commandId: String(row.command_id), model: String(row.model), version: String(row.version), status: String(row.status) as VersionStatus, reason: String(row.reason), at: String(row.at) }
      : undefined;
  }

  /** `current` of each version, in order: one query for the lot (a page of the registry). */
  async currentOf(versions: readonly { model: string; version: string }[]): Promise<(VersionStatusChange | undefined)[]> {
    if (versions.length === 0) return [];
    const models = [...new Set(versions.map((version) => version.model))];
    const rows = await this.db.all(`SELECT * FROM version_status_changes WHERE model IN (${models.map(() => '?').join(', ')}) ORDER BY at, command_id`, models);
    // Oldest first: the last one of each version is its newest, as `current` picks it.
    const newest = new Map<string, VersionStatusChange>();
    for (const row of rows) {
      const change = { commandId: String(row.command_id), model: String(row.model), version: String(row.version), status: String(row.status) as VersionStatus, reason: String(row.reason), at: String(row.at) };
      newest.set(JSON.stringify([change.model, change.version]), change);
    }
    return versions.map((version) => newest.get(JSON.stringify([version.model, version.version])));
  }

  /**
   * A time for a new status change of the version: `at`, or just after the version's newest
   * change when `at` is not after it (the same millisecond, a clock stepped back), so `current`
   * never has to pick between two changes of one instant by their command ids.
   */
  async nextAt(model: string, version: string, at: string): Promise<string> {
    const newest = await this.current(model, version);
    if (!newest || newest.at < at) return at;
    const after = Date.parse(newest.at) + 1;
    return Number.isFinite(after) ? new Date(after).toISOString() : at;
  }

  /** The versions of the model whose newest status change is `production`, in version order. */
  async productionVersions(model: string): Promise<string[]> {
    const rows = await this.db.all(
      `SELECT c.version FROM version_status_changes c
       WHERE c.model = ? AND c.status = 'production' AND NOT EXISTS (
         SELECT 1 FROM version_status_changes n
         WHERE n.model = c.model AND n.version = c.version AND (n.at > c.at OR (n.at = c.at AND n.command_id > c.command_id)))
       ORDER BY c.version`,
      [model],
    );
    return rows.map((row) => String(row.version));
  }
}
