/** Rows come back as plain objects keyed by column name. */
export type Row = Record<string, unknown>;
export type SqlParam = string | number | null;

/**
 * What repositories need from a database: parameterized statements written once with `?`
 * placeholders (the PostgreSQL engine rewrites them to $1, $2, ...).
 */
export interface SqlExecutor {
  all<T extends Row = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  get<T extends Row = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** Runs a statement; `changes` is the number of rows it touched. */
  run(sql: string, params?: readonly SqlParam[]): Promise<{ changes: number }>;
  /** Runs a script of several statements (migrations), without parameters. */
  exec(script: string): Promise<void>;
}

export type Dialect = 'sqlite' | 'postgres';

/**
 * Parameters as both engines store them: an unpaired surrogate (no UTF-8 exists for it) becomes
 * one U+FFFD. pg already encoded it so; better-sqlite3 wrote its 3 bytes of invalid UTF-8 into the
 * file, read back as 3 U+FFFD, so the same text was stored and read differently by engine.
 * Requests carrying one are refused at the edges (untrustedDataProblem); this covers any path that
 * missed it. Returns `params` itself when nothing changes.
 */
export function storableParams(params: readonly SqlParam[]): readonly SqlParam[] {
  if (params.every((param) => typeof param !== 'string' || param.isWellFormed())) return params;
  return params.map((param) => (typeof param === 'string' ? param.toWellFormed() : param));
}

/** A connection (SQLite) or pool (PostgreSQL) with transactions. */
export interface SqlEngine extends SqlExecutor {
  readonly dialect: Dialect;
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A unique or primary-key constraint refused a write; engines translate their native errors to this. */
export class UniqueViolation extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UniqueViolation';
  }
}
