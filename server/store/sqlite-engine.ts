import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Mutex } from '../../shared/util/mutex.ts';
import { storableParams, UniqueViolation, type Row, type SqlEngine, type SqlExecutor, type SqlParam } from './sql-engine.ts';

/**
 * SQLite through better-sqlite3 (synchronous, one connection, WAL). Statements and
 * transactions are serialized through a mutex, so an async transaction never interleaves with
 * another caller's statements on the shared connection.
 */
export class SqliteEngine implements SqlEngine {
  readonly dialect = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #lock = new Mutex();
  readonly #direct: SqlExecutor;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
    this.#direct = directExecutor(this.#db);
  }

  all<T extends Row = Row>(sql: string, params: readonly SqlParam[] = []): Promise<T[]> {
    return this.#lock.run(() => this.#direct.all<T>(sql, params));
  }

  get<T extends Row = Row>(sql: string, params: readonly SqlParam[] = []): Promise<T | undefined> {
    return this.#lock.run(() => this.#direct.get<T>(sql, params));
  }

  run(sql: string, params: readonly SqlParam[] = []): Promise<{ changes: number }> {
    return this.#lock.run(() => this.#direct.run(sql, params));
  }

  exec(script: string): Promise<void> {
    return this.#lock.run(() => this.#direct.exec(script));
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this.#direct);
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  /** quick_check on this connection (see sqliteDamage, which cannot check a file with a hot journal read-only). */
  firstDamage(): string | null {
    return quickCheck(this.#db);
  }

  async close(): Promise<void> {
    await this.#lock.run(async () => {
      if (this.#db.open) this.#db.close();
    });
  }
}

function directExecutor(db: Database.Database): SqlExecutor {
  const statements = new Map<string, Database.Statement>();
  const prepare = (sql: string) => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    return statement;
  };
  const translated = <T>(work: () => T): Promise<T> => {
    try {
      return Promise.resolve(work());
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        return Promise.reject(new UniqueViolation((error as Error).message, { cause: error }));
      }
      return Promise.reject(error);
    }
  };
  return {
    all: <T extends Row>(sql: string, params: readonly SqlParam[] = []) => translated(() => prepare(sql).all(...storableParams(params)) as T[]),
    get: <T extends Row>(sql: string, params: readonly SqlParam[] = []) => translated(() => prepare(sql).get(...storableParams(params)) as T | undefined),
    run: (sql, params = []) => translated(() => ({ changes: prepare(sql).run(...storableParams(params)).changes })),
    exec: (script) => translated(() => void db.exec(script)),
  };
}

/**
 * The first problem SQLite's quick_check finds in the database file (a damaged page, an index
 * out of step with its table), or null; null too when there is no file yet. A page damaged where
 * the start reads nothing would otherwise show later, as requests failing with "database disk
 * image is malformed". Read-only, on its own connection: a read-write one, closed, would fold the
 * write-ahead log a crash left into the file, which a refusal promises to leave as it is. It reads
 * the whole file once (about 0.2 s for 170 MB here).
 */
export function sqliteDamage(path: string): string | null | undefined {
  if (!existsSync(path)) return null;
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    return quickCheck(db);
  } catch (error) {
    // A hot rollback journal (a crash in a transaction before the file was in WAL mode) needs a
    // writer to roll it back, as SQLite does at a read-write open: undefined, checked on that one.
    if (/^SQLITE_READONLY_/.test(String((error as { code?: unknown }).code))) return undefined;
    throw error;
  } finally {
    db?.close();
  }
}

function quickCheck(db: Database.Database): string | null {
  const rows = db.pragma('quick_check(1)') as { quick_check: string }[];
  const found = rows[0]?.quick_check ?? 'ok';
  return found === 'ok' ? null : found;
}
