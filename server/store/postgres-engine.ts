import { userInfo } from 'node:os';
import pg from 'pg';
import { storableParams, UniqueViolation, type Row, type SqlEngine, type SqlExecutor, type SqlParam } from './sql-engine.ts';
import { UserError } from '../../shared/util/errors.ts';
import { asStoreUnavailable } from './store-unavailable.ts';

/**
 * A URL without a user logs in as the operating system's user, as libpq (psql) does: pg takes
 * $USER only, and with it unset (a root shell, a systemd unit, a container) it sent no user name
 * and PostgreSQL refused (`no PostgreSQL user name specified in startup packet`). $PGUSER and a
 * user in the URL still come first.
 */
if (!pg.defaults.user) {
  try {
    pg.defaults.user = userInfo().username;
  } catch {
    // No entry for this uid (a container's arbitrary uid): left unset, and the hint names the fix.
  }
}

export interface PostgresEngineOptions {
  connectionString: string;
  /** Every connection works in this schema (created when missing); for isolated test runs. */
  schema?: string;
  maxConnections?: number;
  /** How long close() waits for statements still running before it ends their connections (default CLOSE_WAIT_MS). */
  closeWaitMs?: number;
}

/**
 * PostgreSQL through a pg Pool. `pool` and `withClient` stay public for subsystems that need
 * raw access (advisory locks, LISTEN/NOTIFY).
 */
export class PostgresEngine implements SqlEngine {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  readonly #schema: string | undefined;
  readonly #closeWaitMs: number;
  /** Every connection the pool holds, idle or checked out (pg keeps no public list). */
  readonly #clients = new Set<pg.PoolClient>();
  #closing: Promise<void> | undefined;
  /** Set once close() stops waiting: a connection that opens after that is ended at once. */
  #cutOff = false;

  private constructor(pool: pg.Pool, schema: string | undefined, closeWaitMs: number) {
    this.pool = pool;
    this.#schema = schema;
    this.#closeWaitMs = closeWaitMs;
    pool.on('connect', (client) => {
      this.#clients.add(client);
      // Still connecting when close() stopped waiting: its statement would run after close() said it failed.
      if (this.#cutOff) void client.end().catch(() => {});
    });
    pool.on('remove', (client) => this.#clients.delete(client));
  }

  /**
   * Connects (failing fast when the server is unreachable) and, with a schema, works in it:
   * created when missing, and checked to be the one the sessions work in.
   */
  static async connect(options: PostgresEngineOptions): Promise<PostgresEngine> {
    const { schema } = options;
    if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
      throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(options.schema)}`);
    }
    // pg lets the URL's own `options` replace the ones given here: the search_path is added to them instead.
    const { connectionString, urlOptions } = withoutUrlOptions(options.connectionString);
    const sessionOptions = [urlOptions, schema ? `-c search_path=${quoteIdentifier(schema)}` : ''].filter(Boolean).join(' ');
    const pool = new pg.Pool({
      connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 5000,
      // A half-open connection (a failover, a dropped NAT entry) is noticed in about a minute,
      // not after the OS's retransmission timeout of a quarter of an hour.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      ...(sessionOptions ? { options: sessionOptions } : {}),
    });
    pool.on('error', () => {
      // An idle client lost its connection; the pool replaces it on the next checkout.
    });
    const engine = new PostgresEngine(pool, schema, options.closeWaitMs ?? CLOSE_WAIT_MS);
    try {
      await engine.get('SELECT 1 AS ok');
      if (schema) await engine.#useSchema(schema);
      else await engine.#checkSessionSchema();
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    return engine;
  }

  /**
   * Creates `schema` when it is missing (a schema created beforehand needs no CREATE right on the
   * database: only its owner's), then checks that the sessions work in it.
   */
  async #useSchema(schema: string): Promise<void> {
    if (!(await this.get('SELECT 1 AS found FROM pg_namespace WHERE nspname = ?', [schema]))) {
      try {
        await this.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
      } catch (error) {
        // Another server creating it at the same moment: IF NOT EXISTS looks before it inserts, so
        // the later one fails on the catalog's unique index (23505) or as duplicate_schema (42P06).
        // Either way the schema is there now.
        const code = (error as { code?: string }).code;
        if (code !== '23505' && code !== '42P06') throw error;
      }
    }
    const current = (await this.get<{ name: string | null }>('SELECT current_schema() AS name'))?.name ?? null;
    if (current === null) throw new UserError(`--database-schema ${schema}: this role cannot use the schema (it needs USAGE and CREATE on it, or to own it)`);
    if (current !== schema) throw new UserError(`--database-schema ${schema}: the sessions work in schema ${current} instead (the URL's options set another search_path)`);
  }

  /**
   * Without --database-schema, the sessions work in the first schema of their search_path that
   * exists: the URL's own (`?options=-c search_path=...`) or the role's. When none does (a schema
   * not created yet, a typo), every table would fail to be made with "no schema has been selected
   * to create in": refused at start, naming what to do.
   */
  async #checkSessionSchema(): Promise<void> {
    const row = await this.get<{ name: string | null; path: string }>('SELECT current_schema() AS name, current_setting(\'search_path\') AS path');
    if (row && row.name === null) {
      throw new UserError(
        `--database-url (or FLEETPRUNE_DATABASE_URL): the database's sessions have no schema to work in: none of their search_path (${row.path}) exists or may be used by this role; ` +
          'create the schema (or fix the search_path in the URL\'s options), or give --database-schema NAME to have one created',
      );
    }
  }

  get schema(): string | undefined {
    return this.#schema;
  }

  all<T extends Row = Row>(sql: string, params: readonly SqlParam[] = []): Promise<T[]> {
    return executorOf(this.pool).all<T>(sql, params);
  }

  get<T extends Row = Row>(sql: string, params: readonly SqlParam[] = []): Promise<T | undefined> {
    return executorOf(this.pool).get<T>(sql, params);
  }

  run(sql: string, params: readonly SqlParam[] = []): Promise<{ changes: number }> {
    return executorOf(this.pool).run(sql, params);
  }

  exec(script: string): Promise<void> {
    return executorOf(this.pool).exec(script);
  }

  async withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw asStoreUnavailable(error);
    });
    // While a client is checked out the pool does not listen for its errors: a connection lost
    // then (a PostgreSQL restart or failover) would be an unhandled 'error' event and crash the
    // process. The query in flight fails on its own; the broken client is destroyed on release.
    let broken: Error | undefined;
    const onError = (error: Error) => (broken ??= error);
    client.on('error', onError);
    try {
      return await work(client);
    } finally {
      client.off('error', onError);
      // A session still inside a transaction (a ROLLBACK that failed) would fail every statement
      // of the next borrower ("current transaction is aborted"): it is closed, not pooled.
      const status = client.getTransactionStatus();
      const inTransaction = status === 'T' || status === 'E';
      client.release(broken ?? (inTransaction ? new Error(`released inside a transaction (status ${status})`) : undefined));
    }
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      // The locking assumes READ COMMITTED (a write re-checks its row after a lock wait), whatever
      // default_transaction_isolation the database was given. A transaction here only talks to
      // the database and takes milliseconds: one left open by a server that froze or died mid-way
      // would keep its row locks (the fleet sequence row, a model's row) until TCP gave up, hours
      // later, blocking the new leader's every write and then its whole pool, so PostgreSQL ends
      // such a session. Set per transaction, in the same round trip, rather than as a startup
      // parameter, which a pooler such as PgBouncer refuses.
      try {
        // Inside the try: a failure of the SET after the BEGIN took effect (a query cancel) is rolled back too.
        await client.query(`BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = ${IDLE_IN_TRANSACTION_MS}`);
        const result = await work(executorOf(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        // BEGIN or COMMIT on a connection lost (the work's own statements say so already).
        throw asStoreUnavailable(error);
      }
    });
  }

  /**
   * Closes the pool. pg's own end() waits for every connection checked out to come back, and a
   * statement that never finishes (PostgreSQL unreachable mid-query, a lock never granted) would
   * hold a server's shutdown until its supervisor killed it. After closeWaitMs the connections
   * still held are ended: their statements fail, and close() rejects saying how many there were
   * (the server logs it as a shutdown step that failed). Once: a second call waits for the first.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const ended = this.pool.end();
    let held = 0;
    if (!(await settlesWithin(ended, this.#closeWaitMs))) {
      this.#cutOff = true;
      // Those pg still counts: the idle ones were taken out at once.
      held = this.pool.totalCount;
      // A client with a statement running has its socket destroyed, one without is told goodbye.
      for (const client of this.#clients) void client.end().catch(() => {});
      // Not waited on for ever either: a holder that never releases its client keeps pg's end() from settling.
      await settlesWithin(ended, this.#closeWaitMs);
    }
    // pg says goodbye to idle connections and waits for the server to close its side, which on a
    // link gone silent never comes: the half-open socket would keep the process from exiting.
    const open = [...this.#clients].filter((client) => !client.connection.stream.destroyed);
    const closed = Promise.all(open.map((client) => new Promise((resolve) => client.connection.stream.once('close', resolve))));
    if (open.length > 0 && !(await settlesWithin(closed, Math.min(this.#closeWaitMs, GOODBYE_WAIT_MS)))) {
      for (const client of open) client.connection.stream.destroy();
    }
    if (held > 0) throw new Error(`closed ${held} PostgreSQL connection${held === 1 ? '' : 's'} still in use after ${this.#closeWaitMs / 1000} s (what ran on them failed)`);
  }
}

/** How long close() waits for PostgreSQL to close its side of the connections it said goodbye to. */
const GOODBYE_WAIT_MS = 1_000;

/** How long close() waits for statements still running before it ends their connections. */
export const CLOSE_WAIT_MS = 5_000;

/** Whether `promise` settles (either way) within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long PostgreSQL lets a session sit idle inside a transaction before it ends it. */
export const IDLE_IN_TRANSACTION_MS = 30_000;

/** `name` as a quoted identifier (a schema name may be a keyword: user, order). */
function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The connection string without its `options` parameter, and that parameter's value ('' when it
 * has none). Only the query string is taken apart: the rest is left exactly as written (pg accepts
 * forms a URL parser refuses, such as `postgres://user@/db?host=/run/postgresql`).
 */
export function withoutUrlOptions(connectionString: string): { connectionString: string; urlOptions: string } {
  const query = connectionString.indexOf('?');
  if (query < 0) return { connectionString, urlOptions: '' };
  const params = new URLSearchParams(connectionString.slice(query + 1));
  const urlOptions = params.get('options');
  if (urlOptions === null) return { connectionString, urlOptions: '' };
  params.delete('options');
  const rest = params.toString();
  return { connectionString: connectionString.slice(0, query) + (rest ? `?${rest}` : ''), urlOptions };
}

/** `?` placeholders → `$1, $2, ...` (repository SQL never has `?` inside string literals). */
export function toPostgresPlaceholders(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}

function executorOf(queryable: pg.Pool | pg.PoolClient): SqlExecutor {
  const query = async <T extends Row>(sql: string, params: readonly SqlParam[]) => {
    try {
      return await queryable.query<T>(toPostgresPlaceholders(sql), storableParams(params) as SqlParam[]);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === '23505') throw new UniqueViolation((error as Error).message, { cause: error });
      // character_not_in_repertoire: a NUL in a text parameter. Requests with one are refused at
      // the edges (untrustedDataProblem); this keeps any path that missed it a bad request, not a 500.
      if (code === '22021') throw new UserError('text cannot contain a NUL character (U+0000)', { cause: error });
      throw asStoreUnavailable(error);
    }
  };
  return {
    all: async <T extends Row>(sql: string, params: readonly SqlParam[] = []) => (await query<T>(sql, params)).rows,
    get: async <T extends Row>(sql: string, params: readonly SqlParam[] = []) => (await query<T>(sql, params)).rows[0] as T | undefined,
    run: async (sql, params = []) => ({ changes: (await query(sql, params)).rowCount ?? 0 }),
    exec: async (script) => {
      // The simple query protocol (no parameters) runs multi-statement scripts.
      await queryable.query(script).catch((error: unknown) => {
        throw asStoreUnavailable(error);
      });
    },
  };
}

/** The SSL modes the pg driver takes as verify-full (unless the URL asks for libpq's meaning), warning on stderr when it does. */
const VERIFY_FULL_ALIASES = new Set(['prefer', 'require', 'verify-ca']);

/**
 * A URL whose sslmode the pg driver reads as verify-full (prefer, require, verify-ca, without
 * uselibpqcompat=true) with that mode said outright: the same connection, but the driver's own
 * warning (eight lines of plain text on stderr, before the server's first JSON log line) is not
 * printed; `note` says it in one line for the server's log instead. Other strings are left as they are.
 */
export function withExplicitSslMode(connectionString: string): { connectionString: string; note?: string } {
  const query = connectionString.indexOf('?');
  // postgres:// and postgresql:// URLs only: the driver ignores sslmode on a socket: one.
  if (query < 0 || !/^postgres(?:ql)?:\/\//i.test(connectionString)) return { connectionString };
  const params = new URLSearchParams(connectionString.slice(query + 1));
  // The driver reads the last of a parameter given twice.
  const mode = params.getAll('sslmode').at(-1);
  if (mode === undefined || !VERIFY_FULL_ALIASES.has(mode) || params.getAll('uselibpqcompat').at(-1) === 'true') return { connectionString };
  params.set('sslmode', 'verify-full');
  return {
    connectionString: `${connectionString.slice(0, query)}?${params.toString()}`,
    note:
      `--database-url: sslmode=${mode} is taken as verify-full by the PostgreSQL driver (the server's certificate and host name are checked); ` +
      `say sslmode=verify-full to mean that, or uselibpqcompat=true&sslmode=${mode} for libpq's meaning`,
  };
}
