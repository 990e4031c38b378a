import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_MIGRATIONS } from './migrations/index.ts';
import { runMigrations } from './migrations/run-migrations.ts';
import { SqliteEngine } from './sqlite-engine.ts';
import { createStore, type Store } from './store.ts';
import type { SqlEngine } from './sql-engine.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

export const SQLITE_FILE = 'fleetprune.sqlite';

export type StoreLocation =
  | { engine: 'sqlite'; dataDir: string }
  | { engine: 'postgres'; databaseUrl: string; schema?: string };

/** Opens the configured engine and brings its schema up to date. */
export async function openStore(location: StoreLocation): Promise<Store> {
  let engine: SqlEngine;
  if (location.engine === 'sqlite') {
    try {
      mkdirSync(location.dataDir, { recursive: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === 'EEXIST' ? 'not a directory' : code === 'ENOTDIR' ? 'a parent is not a directory' : errorMessage(error);
      throw new UserError(`--data-dir: cannot use ${location.dataDir} (${reason})`, { cause: error });
    }
    const file = join(location.dataDir, SQLITE_FILE);
    try {
      engine = new SqliteEngine(file);
    } catch (error) {
      throw unusableSqliteFile(file, error);
    }
  } else {
    try {
      // Imported here: a SQLite server does not load pg.
      const { PostgresEngine } = await import('./postgres-engine.ts');
      engine = await PostgresEngine.connect({ connectionString: location.databaseUrl, schema: location.schema });
    } catch (error) {
      // Connected, and refused for a reason of its own (the schema): that says it all.
      if (error instanceof UserError) throw error;
      throw new UserError(`--database-url: cannot connect to PostgreSQL (${errorMessage(error) || (error as Error).name})`, { cause: error });
    }
  }
  try {
    await runMigrations(engine, ALL_MIGRATIONS);
  } catch (error) {
    // The migration's error is the one to report, not one of closing.
    await engine.close().catch(() => {});
    throw location.engine === 'sqlite' ? unusableSqliteFile(join(location.dataDir, SQLITE_FILE), error) : error;
  }
  return createStore(engine);
}

/**
 * SQLite's refusal of the file (not a database, damaged, locked, unreadable) as a UserError naming
 * it; the file is left as it is. Any other error is returned unchanged.
 */
function unusableSqliteFile(file: string, error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  if (error instanceof UserError || typeof code !== 'string' || !code.startsWith('SQLITE_')) return error;
  return new UserError(`--data-dir: cannot use the database ${file} (${errorMessage(error)}); it is left as it is`, { cause: error });
}
