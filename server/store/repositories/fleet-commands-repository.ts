import type { FleetCommand } from '../../../shared/protocol/payloads.ts';
import type { SqlExecutor } from '../sql-engine.ts';

export interface FleetCommandRecord {
  id: string;
  deviceId: string;
  command: FleetCommand['command'];
  issuedAt: string;
  issuedBy: string;
}

/**
 * SQL for the fleet commands the server published, one row per (command id, addressed device):
 * a device answers a command with an assignment report whose assignmentId is the command id.
 */
export class FleetCommandsRepository {
  constructor(private readonly db: SqlExecutor) {}

  /** Publishing the same id to the same device again keeps the first record. */
  async insert(record: FleetCommandRecord): Promise<boolean> {
    const result = await this.db.run(
      'INSERT INTO fleet_commands (id, device_id, command, issued_at, issued_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id, device_id) DO NOTHING',
      [record.id, record.deviceId, record.command, record.issuedAt, record.issuedBy],
    );
    return result.changes > 0;
  }

  /** Records that the device answered the command; false when it was never sent to it. */
  async setAnswered(id: string, deviceId: string, at: string): Promise<boolean> {
    return (await this.db.run('UPDATE fleet_commands SET answered_at = COALESCE(answered_at, ?) WHERE id = ? AND device_id = ?', [at, id, deviceId])).changes > 0;
  }

  /**
   * Deletes the records of commands issued before `cutoff` that their device answered, or whose
   * device is revoked. One still unanswered stays: its device, offline since, may answer it yet.
   */
  async deleteAnsweredBefore(cutoff: Date): Promise<number> {
    const sql = `DELETE FROM fleet_commands WHERE issued_at < ?
      AND (answered_at IS NOT NULL OR device_id IN (SELECT id FROM devices WHERE revoked_at IS NOT NULL))`;
    return (await this.db.run(sql, [cutoff.toISOString()])).changes;
  }

  async get(id: string, deviceId: string): Promise<FleetCommandRecord | undefined> {
    const row = await this.db.get('SELECT * FROM fleet_commands WHERE id = ? AND device_id = ?', [id, deviceId]);
    if (!row) return undefined;
    return {
      id: String(row.id),
      deviceId: String(row.device_id),
      command: String(row.command) as FleetCommand['command'],
      issuedAt: String(row.issued_at),
      issuedBy: String(row.issued_by),
    };
  }
}
