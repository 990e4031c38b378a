import type { SqlEngine, SqlExecutor } from '../sql-engine.ts';
import { UserError } from '../../../shared/util/errors.ts';
import { ddlTypes, type Migration } from './migration.ts';

export interface AppliedMigration {
  domain: string;
  version: number;
  name: string;
}

/** The newest migration of each domain, `audit:1 auth:2 …`: what a build's database schema is. */
export function schemaLevel(migrations: readonly Migration[]): string {
  const newest = new Map<string, number>();
  for (const { domain, version } of migrations) newest.set(domain, Math.max(version, newest.get(domain) ?? 0));
  return [...newest].sort(([a], [b]) => a.localeCompare(b)).map(([domain, version]) => `${domain}:${version}`).join(' ');
}

/**
 * Applies the pending migrations in one transaction (both engines have transactional DDL), so a
 * crash mid-way leaves the schema as it was. On PostgreSQL an advisory lock keeps two servers
 * starting at once from racing. Refuses (a UserError) a database holding migrations it does not
 * know. `beforeUpgrade` runs first, inside the transaction, when a database that has migrations
 * already has some to apply (an upgrade; not a new database): it may refuse by throwing. Returns
 * what it applied.
 */
export async function runMigrations(
  engine: SqlEngine,
  migrations: readonly Migration[],
  options: { beforeUpgrade?: (pending: readonly Migration[], tx: SqlExecutor) => Promise<void> } = {},
): Promise<AppliedMigration[]> {
  checkNumbering(migrations);
  const types = ddlTypes(engine.dialect);
  return engine.transaction(async (tx) => {
    if (engine.dialect === 'postgres') await tx.get("SELECT pg_advisory_xact_lock(hashtext('fleetprune:migrations')) AS locked");
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      domain TEXT NOT NULL,
      version INTEGER NOT NULL,
      name TEXT NOT NULL,
      applied_at TEXT NOT NULL,
      PRIMARY KEY (domain, version)
    )`);
    const rows = await tx.all<{ domain: string; version: number }>('SELECT domain, version FROM schema_migrations');
    const done = new Set(rows.map((row) => `${row.domain}:${Number(row.version)}`));
    // Migrations this code does not know were applied by a newer fleetprune: an older one would
    // run against a schema it was not written for (a downgrade), so it refuses.
    const known = new Set(migrations.map((migration) => `${migration.domain}:${migration.version}`));
    const unknown = [...done].filter((key) => !known.has(key)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    if (unknown.length > 0) {
      throw new UserError(
        `the database was migrated by a newer fleetprune (it has migrations ${unknown.join(', ')} that this version does not know; it knows ${schemaLevel(migrations)}); ` +
          'run a version that knows them (`fleetprune --version` names the migrations a build knows) or restore a backup',
      );
    }
    const pending = migrations.filter((migration) => !done.has(`${migration.domain}:${migration.version}`));
    if (pending.length > 0 && done.size > 0) await options.beforeUpgrade?.(pending, tx);
    const applied: AppliedMigration[] = [];
    for (const migration of migrations) {
      if (done.has(`${migration.domain}:${migration.version}`)) continue;
      await tx.exec(migration.sql(types));
      await tx.run('INSERT INTO schema_migrations (domain, version, name, applied_at) VALUES (?, ?, ?, ?)', [
        migration.domain,
        migration.version,
        migration.name,
        new Date().toISOString(),
      ]);
      applied.push({ domain: migration.domain, version: migration.version, name: migration.name });
    }
    return applied;
  });
}

function checkNumbering(migrations: readonly Migration[]): void {
  const next = new Map<string, number>();
  for (const { domain, version } of migrations) {
    const expected = next.get(domain) ?? 1;
    if (version !== expected) throw new Error(`migration ${domain}:${version} is out of order (expected ${domain}:${expected})`);
    next.set(domain, expected + 1);
  }
}
