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
  {
    domain: 'jobs',
    version: 4,
    name: 'cancelled jobs end cancelled, not failed',
    // Before the `cancelled` state, a cancel ended its job `failed` with "cancelled by <actor>".
    // Those jobs become `cancelled`, as a cancel now ends them, so `jobs list` tells them from
    // failures across the upgrade. Only jobs whose cancel is in the audit log (written in the
    // transaction that ended them) and whose error is that cancel's message: a real failure whose
    // message merely begins "cancelled by" stays failed. Their updated_at stays the time they
    // ended; not audited (no one changed anything). (state has no CHECK constraint, and its index
    // needs no change.) Being a migration, it also makes an older fleetprune refuse this database
    // rather than read a state it does not know as an unfinished job.
    sql: () => `
      UPDATE jobs SET state = 'cancelled'
      WHERE state = 'failed' AND EXISTS (
        SELECT 1 FROM audit_log a
        WHERE a.action = 'job.cancel' AND a.target = 'job:' || jobs.id AND jobs.error = 'cancelled by ' || a.actor);`,
  },
];
