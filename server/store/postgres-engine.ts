import pg from 'pg';
import { storableParams, UniqueViolation, type Row, type SqlEngine, type SqlExecutor, type SqlParam } from './sql-engine.ts';
import { UserError } from '../../shared/util/errors.ts';

export interface PostgresEngineOptions {
  connectionString: string;
  /** Every connection works in this schema (created when missing); for isolated test runs. */
  schema?: string;
  maxConnections?: number;
}

/**
 * PostgreSQL through a pg Pool. `pool` and `withClient` stay public for subsystems that need
 * raw access (advisory locks, LISTEN/NOTIFY).
 */
export class PostgresEngine implements SqlEngine {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  readonly #schema: string | undefined;

  private constructor(pool: pg.Pool, schema: string | undefined) {
    this.pool = pool;
    this.#schema = schema;
  }

  /** Connects (failing fast when the server is unreachable) and creates the schema if asked to. */
  static async connect(options: PostgresEngineOptions): Promise<PostgresEngine> {
    if (options.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(options.schema)) {
      throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(options.schema)}`);
    }
    if (options.schema) {
      const admin = new pg.Client({ connectionString: options.connectionString });
      await admin.connect();
      try {
        await admin.query(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`);
      } catch (error) {
        // Another server creating it at the same moment: IF NOT EXISTS looks before it inserts, so
        // the later one fails on the catalog's unique index (23505) or as duplicate_schema (42P06).
        // Either way the schema is there now.
        const code = (error as { code?: string }).code;
        if (code !== '23505' && code !== '42P06') throw error;
      } finally {
        await admin.end();
      }
    }
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 5000,
      // A half-open connection (a failover, a dropped NAT entry) is noticed in about a minute,
      // not after the OS's retransmission timeout of a quarter of an hour.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
    });
    pool.on('error', () => {
      // An idle client lost its connection; the pool replaces it on the next checkout.
    });
    const engine = new PostgresEngine(pool, options.schema);
    await engine.get('SELECT 1 AS ok');
    return engine;
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
    const client = await this.pool.connect();
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
      client.release(broken);
    }
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      await client.query('BEGIN');
      try {
        const result = await work(executorOf(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
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
      throw error;
    }
  };
  return {
    all: async <T extends Row>(sql: string, params: readonly SqlParam[] = []) => (await query<T>(sql, params)).rows,
    get: async <T extends Row>(sql: string, params: readonly SqlParam[] = []) => (await query<T>(sql, params)).rows[0] as T | undefined,
    run: async (sql, params = []) => ({ changes: (await query(sql, params)).rowCount ?? 0 }),
    exec: async (script) => {
      // The simple query protocol (no parameters) runs multi-statement scripts.
      await queryable.query(script);
    },
  };
}
