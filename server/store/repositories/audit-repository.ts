import type { SqlExecutor } from '../sql-engine.ts';
import { fromJsonColumn, toJsonColumn } from './json-column.ts';

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  details: Record<string, unknown>;
}

/** SQL for the append-only audit log. */
export class AuditRepository {
  constructor(private readonly db: SqlExecutor) {}

  async append(entry: Omit<AuditEntry, 'id'>): Promise<void> {
    await this.db.run('INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)', [
      entry.at,
      entry.actor,
      entry.action,
      entry.target,
      toJsonColumn(entry.details),
    ]);
  }

  /** Whether some entry records `action` on `target`. */
  async has(action: string, target: string): Promise<boolean> {
    return (await this.db.get('SELECT 1 AS found FROM audit_log WHERE action = ? AND target = ? LIMIT 1', [action, target])) !== undefined;
  }

  /** Newest first, `limit` entries older than `beforeId`. */
  async list(options: { beforeId?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const rows = await this.db.all('SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?', [
      options.beforeId ?? Number.MAX_SAFE_INTEGER,
      options.limit ?? 100,
    ]);
    return rows.map((row) => ({
      id: Number(row.id),
      at: String(row.at),
      actor: String(row.actor),
      action: String(row.action),
      target: String(row.target),
      details: fromJsonColumn<Record<string, unknown>>(row.details),
    }));
  }

  async count(): Promise<number> {
    return Number((await this.db.get('SELECT COUNT(*) AS n FROM audit_log'))?.n ?? 0);
  }
}
