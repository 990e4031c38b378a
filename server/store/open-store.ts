import { accessSync, closeSync, constants, fstatSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_MIGRATIONS } from './migrations/index.ts';
import { runMigrations } from './migrations/run-migrations.ts';
import type { Migration } from './migrations/migration.ts';
import type { Logger } from '../../shared/util/log.ts';
import { SqliteEngine, sqliteDamage } from './sqlite-engine.ts';
import { createStore, type Store } from './store.ts';
import type { SqlEngine, SqlExecutor } from './sql-engine.ts';
import { UserError, errorMessage, oneLineMessage } from '../../shared/util/errors.ts';
import { describeFsError } from '../../shared/util/fs-checks.ts';

export const SQLITE_FILE = 'fleetprune.sqlite';

export type StoreLocation =
  | { engine: 'sqlite'; dataDir: string }
  | { engine: 'postgres'; databaseUrl: string; schema?: string };

export interface OpenStoreOptions {
  /** Says which migrations an upgrade applied (or that a new database was set up). */
  log?: Logger;
  /** Before an upgrade's migrations, inside their transaction: may refuse them (see runMigrations). */
  beforeUpgrade?: (pending: readonly Migration[], tx: SqlExecutor) => Promise<void>;
}

/** Opens the configured engine and brings its schema up to date. */
export async function openStore(location: StoreLocation, options: OpenStoreOptions = {}): Promise<Store> {
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
    refuseUnwritable([file, `${file}-wal`, `${file}-shm`]);
    let sqlite: SqliteEngine | undefined;
    try {
      keepPrivate(file, options.log);
      const readOnly = sqliteDamage(file);
      const damaged = (damage: string) => new UserError(`--data-dir: the database ${file} is damaged (SQLite's quick_check: ${oneLineMessage(damage)}); restore it from a backup; it is left as it is`);
      if (readOnly !== null && readOnly !== undefined) throw damaged(readOnly);
      sqlite = new SqliteEngine(file);
      // Not checkable read-only (a hot journal, which this open rolled back as any SQLite open does): checked now.
      const damage = readOnly === undefined ? sqlite.firstDamage() : null;
      if (damage !== null) throw damaged(damage);
      engine = sqlite;
    } catch (error) {
      await sqlite?.close().catch(() => {});
      throw unusableSqliteFile(file, error);
    }
  } else {
    try {
      // Imported here: a SQLite server does not load pg.
      const { PostgresEngine, withExplicitSslMode } = await import('./postgres-engine.ts');
      const { connectionString, note } = withExplicitSslMode(location.databaseUrl);
      if (note) options.log?.warn(note);
      engine = await PostgresEngine.connect({ connectionString, schema: location.schema });
    } catch (error) {
      // Connected, and refused for a reason of its own (the schema): that says it all.
      if (error instanceof UserError) throw error;
      throw new UserError(`--database-url (or FLEETPRUNE_DATABASE_URL): cannot connect to PostgreSQL (${errorMessage(error) || (error as Error).name})${userHint(location.databaseUrl, error)}`, { cause: error });
    }
  }
  try {
    const applied = await runMigrations(engine, ALL_MIGRATIONS, options.beforeUpgrade ? { beforeUpgrade: options.beforeUpgrade } : {});
    if (applied.length === ALL_MIGRATIONS.length) options.log?.info({ migrations: applied.length }, 'set up a new database');
    else if (applied.length > 0) {
      // An upgrade: what changed in the database, which an older fleetprune can no longer open.
      const names = applied.map((migration) => `${migration.domain}:${migration.version} (${migration.name})`);
      options.log?.info({ migrations: applied.map((migration) => `${migration.domain}:${migration.version}`) }, `migrated the database: applied ${names.join(', ')}`);
    }
  } catch (error) {
    // The migration's error is the one to report, not one of closing.
    await engine.close().catch(() => {});
    throw location.engine === 'sqlite' ? unusableSqliteFile(join(location.dataDir, SQLITE_FILE), error) : postgresRefusal(error, location.schema);
  }
  return createStore(engine);
}

/**
 * A migration PostgreSQL refused for want of a privilege (insufficient_privilege, 42501: no CREATE
 * on the schema, as PostgreSQL 15 gives no one but its owner on `public`) as one line saying what
 * the database user needs; any other error as it is.
 */
function postgresRefusal(error: unknown, schema: string | undefined): unknown {
  if ((error as { code?: unknown }).code !== '42501') return error;
  const where = schema === undefined ? 'the schema it works in (public, unless the search_path says otherwise)' : `schema ${schema}`;
  return new UserError(
    `--database-url (or FLEETPRUNE_DATABASE_URL): PostgreSQL refused to set up fleetprune's tables: ${errorMessage(error)} ` +
      `(the database user needs CREATE on ${where}: GRANT CREATE ON SCHEMA … TO that user, or give --database-schema a schema it owns)`,
    { cause: error },
  );
}

/**
 * `; put the user in the URL: postgres://USER@HOST/DB` when PostgreSQL refused the login
 * (SQLSTATE class 28) and the URL names no user: pg then logs in as $PGUSER or $USER, which may
 * be empty (`no PostgreSQL user name specified in startup packet`) or a role the database lacks.
 */
function userHint(databaseUrl: string, error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('28') || !URL.canParse(databaseUrl)) return '';
  const url = new URL(databaseUrl);
  if (url.username !== '' || url.searchParams.has('user') || url.host === '') return '';
  url.username = 'USER';
  // The example is printed: not the password it was given.
  if (url.password !== '') url.password = 'PASSWORD';
  if (url.searchParams.has('password')) url.searchParams.set('password', 'PASSWORD');
  return `; put the user in the URL: ${url.toString()}`;
}

/**
 * Refuses a database file (or its WAL and shared-memory files) that is there but cannot be
 * written: SQLite would open it read-only without a word, and the server's first write would fail
 * as an internal error (`attempt to write a readonly database`).
 */
function refuseUnwritable(paths: readonly string[]): void {
  for (const path of paths) {
    try {
      accessSync(path, constants.W_OK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new UserError(`--data-dir: cannot write the database ${path} (${describeFsError(error)}); it is left as it is`, { cause: error });
    }
  }
}

/**
 * The database holds the audit log, every token's and device secret's hash and the registry: a new
 * one is made readable by its owner alone (SQLite would make it, and its WAL and shared-memory
 * files, which take the database file's mode, 0644 under the usual umask). An existing one that
 * others can read is used as it is, with a warning, as the signing key is.
 */
function keepPrivate(file: string, log: Logger | undefined): void {
  let fd: number;
  try {
    // Made 0600 if it is not there (through a symlink to a file not made yet too), opened as it
    // is if it is: never truncated.
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  } catch {
    // Not made or opened here (a directory that takes no new file, an unreadable file): SQLite's own open says why.
    return;
  }
  let mode: number;
  try {
    mode = fstatSync(fd).mode;
  } finally {
    closeSync(fd);
  }
  if ((mode & 0o077) !== 0) {
    log?.warn(`the database ${file} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): it holds the audit log and the hashes of every token and device secret; chmod 600 it and its -wal and -shm files`);
  }
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
