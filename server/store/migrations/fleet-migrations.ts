import type { Migration } from './migration.ts';

/**
 * The device fleet: enrolled devices (credentials, labels, last known state), the raw history of
 * device reports (each report id once per device), the assignments and the fleet commands the server
 * published (a device's answer is accepted only for one of those).
 */
export const fleetMigrations: Migration[] = [
  {
    domain: 'fleet',
    version: 1,
    name: 'devices, reports and assignments',
    sql: (t) => `
      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        labels TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        token_id TEXT NOT NULL,
        enrolled_at TEXT NOT NULL,
        enrolled_by TEXT NOT NULL,
        revoked_at TEXT,
        online INTEGER NOT NULL DEFAULT 0,
        online_since TEXT,
        last_seen TEXT,
        active TEXT,
        candidate TEXT,
        previous TEXT,
        heartbeat_at TEXT,
        uptime_seconds ${t.real},
        cpu_percent ${t.real},
        rss_bytes ${t.real},
        serving TEXT,
        retained_assignment TEXT
      );
      CREATE TABLE device_reports (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        assignment_id TEXT,
        cohort TEXT NOT NULL,
        created_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL
      );
      CREATE INDEX device_reports_time ON device_reports (kind, created_at);
      CREATE INDEX device_reports_device ON device_reports (device_id, created_at);
      CREATE TABLE device_assignments (
        id TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices(id),
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        artifact_id TEXT NOT NULL,
        role TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        issued_by TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (id, device_id)
      );
      CREATE INDEX device_assignments_device ON device_assignments (device_id, issued_at);`,
  },
  {
    domain: 'fleet',
    version: 2,
    name: 'fleet commands',
    sql: () => `
      CREATE TABLE fleet_commands (
        id TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices(id),
        command TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        issued_by TEXT NOT NULL,
        PRIMARY KEY (id, device_id)
      );`,
  },
  {
    domain: 'fleet',
    version: 3,
    name: 'index of device answers by assignment',
    // findAnswer looks a device's answer up by assignment id on every delivery check; without this
    // it walks the device's whole report history.
    sql: () => `CREATE INDEX device_reports_answer ON device_reports (assignment_id, device_id, created_at);`,
  },
  {
    domain: 'fleet',
    version: 4,
    name: 'index of device reports by arrival',
    // The retention sweep deletes by arrival time (the server's clock, not the device's).
    sql: () => `CREATE INDEX device_reports_received ON device_reports (received_at);`,
  },
  {
    domain: 'fleet',
    version: 5,
    name: 'message sequence counters',
    // Signed assignments and fleet commands carry a number from these counters; a device takes no
    // message of a stream that is not newer than the newest it took (replays are refused).
    sql: () => `
      CREATE TABLE fleet_sequences (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
      INSERT INTO fleet_sequences (name, value) VALUES ('assignment', 0), ('command', 0);`,
  },
  {
    domain: 'fleet',
    version: 6,
    name: 'report ids scoped to their device',
    // A device builds its report ids from ids other devices see too (an assignment sent to several,
    // a fleet command): a fleet-wide unique id let one device send reports under another's ids
    // first, and the other's real reports were dropped as repeats. The key is `<device>/<id>`.
    sql: () => `UPDATE device_reports SET id = device_id || '/' || id;`,
  },
  {
    domain: 'fleet',
    version: 7,
    name: 'when a device answered a fleet command',
    // Retention deletes only commands their device answered (or revoked devices'): one still
    // unanswered may be answered when its device, offline since, comes back.
    sql: () => `
      ALTER TABLE fleet_commands ADD COLUMN answered_at TEXT;
      UPDATE fleet_commands SET answered_at = (
        SELECT MIN(r.received_at) FROM device_reports r
        WHERE r.kind = 'assignment' AND r.assignment_id = fleet_commands.id AND r.device_id = fleet_commands.device_id
      );`,
  },
  {
    domain: 'fleet',
    version: 8,
    name: 'device, report and assignment ids compare and sort by code point on every engine',
    // The device list is ordered, and paged (`after`), by id: on PostgreSQL by the database's
    // collation (often a language's, where "a1" sorts before "B1"), on SQLite by code point; and
    // reports and assignments of the same millisecond are told apart by id (a device's first
    // answer, the newest benchmark). "C" is code point order on PostgreSQL; the columns
    // referencing devices(id) change with it. Only the keys' indexes are rebuilt, not the tables.
    sql: (t) =>
      t.dialect === 'sqlite'
        ? 'SELECT 1;'
        : `
      ALTER TABLE devices ALTER COLUMN id TYPE TEXT COLLATE "C";
      ALTER TABLE device_assignments ALTER COLUMN device_id TYPE TEXT COLLATE "C", ALTER COLUMN id TYPE TEXT COLLATE "C";
      ALTER TABLE fleet_commands ALTER COLUMN device_id TYPE TEXT COLLATE "C";
      ALTER TABLE device_reports ALTER COLUMN id TYPE TEXT COLLATE "C";`,
  },
  {
    domain: 'fleet',
    version: 9,
    name: 'assignments replaced before their device answered are superseded',
    // They stayed `published` for good, so retention never deleted them. A device's newest
    // assignment (or the one it holds retained) stays as it is: it may still be answered.
    sql: () => `
      UPDATE device_assignments SET state = 'superseded', reason = 'replaced by a newer assignment before the device answered'
      WHERE state = 'published'
        AND EXISTS (SELECT 1 FROM device_assignments newer WHERE newer.device_id = device_assignments.device_id AND newer.issued_at > device_assignments.issued_at)
        AND NOT EXISTS (
          SELECT 1 FROM devices d WHERE d.id = device_assignments.device_id
          AND d.retained_assignment LIKE '%"id":"' || device_assignments.id || '"%'
        );`,
  },
  {
    domain: 'fleet',
    version: 10,
    name: 'benchmark totals kept with the device',
    // The exported per-device counters add up every benchmark; a restart rebuilt them from each
    // device's newest benchmark only (a counter reset to Prometheus), and retention could delete
    // even that one. NULL: none kept yet (the server seeds them from the newest benchmarks).
    sql: () => 'ALTER TABLE devices ADD COLUMN report_totals TEXT;',
  },
  {
    domain: 'fleet',
    version: 11,
    name: 'whether a benchmark report is evidence',
    // Decided when the report arrives (DeviceReportsRepository.answersReplacedAssignment): a benchmark answering a candidate
    // assignment the server had replaced by then is history, not evidence. Kept with the report, so
    // the rebuilds (a restart, the builtin provider's history) read what the live export did,
    // whatever retention deletes of the assignments later. Reports from before: evidence, as exported.
    sql: () => 'ALTER TABLE device_reports ADD COLUMN evidence INTEGER NOT NULL DEFAULT 1;',
  },
  {
    domain: 'fleet',
    version: 12,
    name: 'the signing key each device pins',
    // The id of the server signing key whose public half the device's agent config holds: a start
    // with another key finds the devices that would refuse every model it signs. NULL: enrolled
    // before it was kept (the server's key at the first start that reads it is taken for theirs).
    sql: () => 'ALTER TABLE devices ADD COLUMN signing_key_id TEXT;',
  },
  {
    domain: 'fleet',
    version: 13,
    name: 'index of devices by their download token',
    // Every download with a device's token looks up the device holding it (DownloadScope): without
    // this, a scan of the devices table per request, under SQLite's one connection.
    sql: () => 'CREATE INDEX devices_token ON devices (token_id);',
  },
  {
    domain: 'fleet',
    version: 14,
    name: 'the heartbeat interval each device announces',
    // Seconds between its heartbeats, as its latest one said: a device silent for several of them
    // is marked offline (SilentDeviceSweep). NULL: an agent that does not say (never marked so).
    sql: (t) => `ALTER TABLE devices ADD COLUMN heartbeat_interval ${t.real};`,
  },
  {
    domain: 'fleet',
    version: 15,
    name: 'the newest assignment each device took',
    // Its number, as the device's latest heartbeat said: a retained assignment numbered below it is
    // one the device has moved on from (the store restored from an older backup), so no rollback
    // sends the device back to it (StoreFleetPort.listDevices). NULL: not said (an older agent).
    sql: () => 'ALTER TABLE devices ADD COLUMN assignment_seq BIGINT;',
  },
];
