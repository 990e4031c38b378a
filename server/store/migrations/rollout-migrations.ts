import type { Dialect } from '../sql-engine.ts';
import type { Migration } from './migration.ts';

/**
 * Rollouts (state and outbox of pending actions as JSON, with a revision for optimistic
 * concurrency), their decision log, the ids of executed actions, and the version status changes
 * rollouts make in the registry (idempotent by command id).
 */
export const rolloutMigrations: Migration[] = [
  {
    domain: 'rollouts',
    version: 1,
    name: 'rollouts, decision log, executed actions, version status',
    sql: (t) => `
      CREATE TABLE rollouts (
        ord ${t.serialPrimaryKey},
        id TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        candidate_version TEXT NOT NULL,
        phase TEXT NOT NULL,
        unfinished INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        state TEXT NOT NULL,
        pending_actions TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX rollouts_model ON rollouts (model);
      CREATE INDEX rollouts_unfinished ON rollouts (unfinished);
      CREATE TABLE rollout_decisions (
        ord ${t.serialPrimaryKey},
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        decision_id TEXT NOT NULL,
        at TEXT NOT NULL,
        entry TEXT NOT NULL,
        UNIQUE (rollout_id, decision_id)
      );
      CREATE TABLE rollout_actions (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        action_id TEXT NOT NULL,
        executed_at TEXT NOT NULL,
        PRIMARY KEY (rollout_id, action_id)
      );
      CREATE TABLE version_status_changes (
        command_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
      );
      CREATE INDEX version_status_changes_version ON version_status_changes (model, version);`,
  },
  {
    domain: 'rollouts',
    version: 2,
    name: 'decision log entries whose per-device evidence was trimmed',
    // The retention sweep trims measurements of rollouts finished before --report-retention-days
    // once; the index finds the entries not yet looked at without reading the whole log.
    sql: () => `
      ALTER TABLE rollout_decisions ADD COLUMN evidence_trimmed INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX rollout_decisions_untrimmed ON rollout_decisions (evidence_trimmed, rollout_id);`,
  },
  {
    domain: 'rollouts',
    version: 3,
    name: 'versions left production by a later promotion are superseded',
    // Before `superseded` existed, a version stayed `production` after another one took the
    // production alias (a later rollout, an operator): the model listed two production versions.
    // Each version whose newest status is production but that no longer holds the alias gets
    // `superseded by MODEL@VERSION` (the alias holder), at the time the alias last moved. A model
    // without a production alias is left as it is. Not audited: no one changed anything.
    // (On PostgreSQL the alias's names compare as "C", the status table's by the database's
    // collation: the comparisons name one.) A production status dated at or after the alias's
    // move (servers' clocks apart, the same millisecond) gets its `superseded` one millisecond
    // later: at its own instant, `current` would pick by command id, and `ro-…` outranks `migration:…`.
    sql: (t) => `
      INSERT INTO version_status_changes (command_id, model, version, status, reason, at)
      SELECT 'migration:rollouts-3:supersedes:' || c.model || '@' || c.version, c.model, c.version, 'superseded',
             'superseded by ' || a.model || '@' || a.version,
             CASE WHEN a.updated_at > c.at THEN a.updated_at ELSE ${oneMillisecondAfter(t.dialect, 'c.at')} END
      FROM version_status_changes c
      JOIN model_aliases a ON a.model = c.model${t.dialect === 'postgres' ? ' COLLATE "C"' : ''} AND a.alias = 'production' AND a.version <> c.version${t.dialect === 'postgres' ? ' COLLATE "C"' : ''}
      WHERE c.status = 'production' AND ${NEWEST_STATUS_OF_ITS_VERSION};`,
  },
  {
    domain: 'rollouts',
    version: 4,
    name: 'versions left production by a cleared production alias are withdrawn',
    // Before `withdrawn` existed, an operator clearing the production alias left its version's
    // status `production`, with no version holding the alias (as could a failure racing a move of
    // the alias, before status changes took the model's lock). Each version whose newest status is
    // production while its model has no production alias gets `withdrawn`, one millisecond after
    // that status (the migration cannot tell when the alias went). Not audited, as above.
    sql: (t) => `
      INSERT INTO version_status_changes (command_id, model, version, status, reason, at)
      SELECT 'migration:rollouts-4:withdraws:' || c.model || '@' || c.version, c.model, c.version, 'withdrawn',
             'no version holds the production alias (found by the migration to withdrawn)',
             ${oneMillisecondAfter(t.dialect, 'c.at')}
      FROM version_status_changes c
      WHERE c.status = 'production'
        AND NOT EXISTS (SELECT 1 FROM model_aliases a WHERE a.model = c.model${t.dialect === 'postgres' ? ' COLLATE "C"' : ''} AND a.alias = 'production')
        AND ${NEWEST_STATUS_OF_ITS_VERSION};`,
  },
];

/** For a status change `c`: no later change of its version (at, then command id, breaks ties, as `current` does). */
const NEWEST_STATUS_OF_ITS_VERSION = `NOT EXISTS (
        SELECT 1 FROM version_status_changes n
        WHERE n.model = c.model AND n.version = c.version AND (n.at > c.at OR (n.at = c.at AND n.command_id > c.command_id)))`;

/** The ISO-8601 text time one millisecond after the one in `column`. */
function oneMillisecondAfter(dialect: Dialect, column: string): string {
  return dialect === 'postgres'
    ? `to_char((${column}::timestamptz + interval '1 millisecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
    : `strftime('%Y-%m-%dT%H:%M:%fZ', ${column}, '+0.001 seconds')`;
}
