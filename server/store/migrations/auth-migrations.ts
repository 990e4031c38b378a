import type { Migration } from './migration.ts';

export const authMigrations: Migration[] = [
  {
    domain: 'auth',
    version: 1,
    name: 'hashed bearer tokens',
    sql: () => `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at TEXT
      );`,
  },
  {
    domain: 'auth',
    version: 2,
    name: 'token expiry',
    // A token made with an expiry (tokens create --expires-in) stops working then; NULL never expires.
    sql: () => `ALTER TABLE tokens ADD COLUMN expires_at TEXT;`,
  },
];
