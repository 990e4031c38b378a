import type { Dialect } from '../sql-engine.ts';

/**
 * One schema change of one domain. Each domain (registry, auth, audit, jobs, and later devices,
 * rollouts, ...) numbers its own migrations 1, 2, 3, ...; `sql` returns the DDL for a dialect.
 */
export interface Migration {
  domain: string;
  version: number;
  name: string;
  sql: (ddl: DdlTypes) => string;
}

/** Column types that differ between the engines. Timestamps are ISO-8601 TEXT on both. */
export interface DdlTypes {
  dialect: Dialect;
  /** An auto-incrementing integer primary key. */
  serialPrimaryKey: string;
  real: string;
}

export function ddlTypes(dialect: Dialect): DdlTypes {
  return dialect === 'sqlite'
    ? { dialect, serialPrimaryKey: 'INTEGER PRIMARY KEY AUTOINCREMENT', real: 'REAL' }
    : { dialect, serialPrimaryKey: 'BIGSERIAL PRIMARY KEY', real: 'DOUBLE PRECISION' };
}
