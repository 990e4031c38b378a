import type { Migration } from './migration.ts';

export const jobsMigrations: Migration[] = [
  {
    domain: 'jobs',
    version: 1,
    name: 'background jobs',
    sql: () => `
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        request TEXT NOT NULL,
        progress TEXT,
        result TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        created_by TEXT NOT NULL
      );
      CREATE INDEX jobs_state ON jobs (state);`,
  },
  {
    domain: 'jobs',
    version: 2,
    name: 'the server (node) that owns each job',
    // NULL for jobs from before: any server restarting may fail them, as before.
    sql: () => 'ALTER TABLE jobs ADD COLUMN node TEXT',
  },
  {
    domain: 'jobs',
    version: 3,
    name: 'job leases: when its server last renewed each unfinished job (database clock, epoch seconds)',
    // NULL for jobs from before: no other server fails them (their own server does when it restarts).
    sql: () => 'ALTER TABLE jobs ADD COLUMN renewed_at BIGINT',
  },
];
