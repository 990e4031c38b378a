import type { SqlExecutor, SqlParam } from '../sql-engine.ts';
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
/** Which entries an audit listing keeps (each left out: any). */
export interface AuditFilter {
  action?: string;
  actor?: string;
  target?: string;
}

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

  /**
   * Newest first, `limit` entries older than `beforeId`; of those, only entries whose action,
   * actor and target are those given: each exactly, or, given ending in `*`, beginning so
   * (`rollout.*`, `wine@*` every version of wine; `device:osaka-07` that device, not osaka-070).
   * Compared exactly, case and all, on both engines (no LIKE: SQLite's ignores case).
   */
  async list(options: AuditFilter & { beforeId?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const where = ['id < ?'];
    const params: SqlParam[] = [options.beforeId ?? Number.MAX_SAFE_INTEGER];
    for (const column of ['action', 'actor', 'target'] as const) {
      const value = options[column];
      if (value === undefined) continue;
      if (value.endsWith('*')) {
        const start = value.slice(0, -1);
        where.push(`substr(${column}, 1, ?) = ?`);
        params.push(start.length, start);
      } else {
        where.push(`${column} = ?`);
        params.push(value);
      }
    }
    params.push(options.limit ?? 100);
    const rows = await this.db.all(`SELECT * FROM audit_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`, params);
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
