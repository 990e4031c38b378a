import type { Assignment, ModelRef, Telemetry } from '../../../shared/protocol/payloads.ts';
import type { ReportTotal, ServingTotal } from '../../metricproviders/report-history.ts';
import type { SqlExecutor, SqlParam } from '../sql-engine.ts';
import { fromJsonColumn, fromNullableJsonColumn, toJsonColumn } from './json-column.ts';
import { chunksOf, ID_CHUNK } from './id-chunks.ts';

export interface DeviceSlots {
  active: ModelRef | null;
  candidate: ModelRef | null;
  previous: ModelRef | null;
}

export interface DeviceHeartbeat {
  at: string;
  uptimeSeconds: number;
  cpuPercent: number;
  rssBytes: number;
  serving: Telemetry['serving'] | null;
  /** The agent run the heartbeat came from (absent for agents that predate `runId`, and heartbeats without counters). */
  runId?: string;
  /** Seconds between the device's heartbeats, as it said (absent: an agent that does not say). */
  intervalSeconds?: number;
  /** The number of the newest assignment the device took, as it said (absent: an agent that does not say, or none taken). */
  assignmentSeq?: number;
}

export interface DeviceRecord extends DeviceSlots {
  id: string;
  labels: Record<string, string>;
  /** `$7$` hash of the broker secret. */
  secretHash: string;
  /** The device-role API token the agent downloads with. */
  tokenId: string;
  enrolledAt: string;
  enrolledBy: string;
  revokedAt: string | null;
  online: boolean;
  onlineSince: string | null;
  lastSeen: string | null;
  heartbeat: DeviceHeartbeat | null;
  /**
   * What its heartbeats served in total, per model and role: the exported counters' share
   * (servingTotalsAfter). Kept in the `serving` column with the latest heartbeat's counters, so
   * the two always change together.
   */
  servingTotals: ServingTotal[];
  /**
   * What its benchmarks added in total, per model and role (reportTotalsAfter): the exported
   * counters' other share, and the latest benchmark's numbers. Null for a device the store has
   * kept none for yet (benchmarked only before fleet migration 10).
   */
  reportTotals: ReportTotal[] | null;
  /** The assignment now retained on the device's assignment topic (republished at start-up). */
  retainedAssignment: Assignment | null;
  /** The id of the server signing key its agent config pins (null: not known, see pinningOtherKeys). */
  signingKeyId: string | null;
}

export type NewDevice = Pick<DeviceRecord, 'id' | 'labels' | 'secretHash' | 'tokenId' | 'enrolledAt' | 'enrolledBy'> & {
  /** The id of the server signing key its agent config pins (absent: not known, see pinningOtherKeys). */
  signingKeyId?: string;
};

/** SQL for enrolled devices and their last known state. */
export class DevicesRepository {
  constructor(private readonly db: SqlExecutor) {}

  async insert(device: NewDevice): Promise<void> {
    await this.db.run('INSERT INTO devices (id, labels, secret_hash, token_id, enrolled_at, enrolled_by, signing_key_id) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      device.id,
      toJsonColumn(device.labels),
      device.secretHash,
      device.tokenId,
      device.enrolledAt,
      device.enrolledBy,
      device.signingKeyId ?? null,
    ]);
  }

  /**
   * Live devices that pin another signing key than `keyId`, a few of their ids per key (ordered),
   * after taking `keyId` for the key of those enrolled before the key was kept (NULL).
   */
  async pinningOtherKeys(keyId: string): Promise<{ keyId: string; devices: number; examples: string[] }[]> {
    await this.db.run('UPDATE devices SET signing_key_id = ? WHERE signing_key_id IS NULL', [keyId]);
    const rows = await this.db.all(
      'SELECT signing_key_id AS key_id, COUNT(*) AS devices, MIN(id) AS first_id FROM devices WHERE revoked_at IS NULL AND signing_key_id <> ? GROUP BY signing_key_id ORDER BY signing_key_id',
      [keyId],
    );
    const found: { keyId: string; devices: number; examples: string[] }[] = [];
    for (const row of rows) {
      const examples = await this.db.all('SELECT id FROM devices WHERE revoked_at IS NULL AND signing_key_id = ? ORDER BY id LIMIT 3', [String(row.key_id)]);
      found.push({ keyId: String(row.key_id), devices: Number(row.devices), examples: examples.map((example) => String(example.id)) });
    }
    return found;
  }

  /**
   * Locks the device's row until the transaction ends, so read-then-write changes to it (an answer
   * moving its slots) take turns: PostgreSQL transactions otherwise both read the same slots and
   * the later write lost the other's change. A no-op UPDATE, as in ModelsRepository.lockVersion.
   */
  async lock(id: string): Promise<void> {
    await this.db.run('UPDATE devices SET enrolled_at = enrolled_at WHERE id = ?', [id]);
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const row = await this.db.get('SELECT * FROM devices WHERE id = ?', [id]);
    return row ? toDevice(row) : undefined;
  }

  /** The device whose artifact-download token `tokenId` is (created with it at enrollment), if any. */
  async holderOfToken(tokenId: string): Promise<string | undefined> {
    const row = await this.db.get('SELECT id FROM devices WHERE token_id = ?', [tokenId]);
    return row ? String(row.id) : undefined;
  }

  /** The devices among `ids` that exist, keyed by id: a few queries for thousands of ids, not one each. */
  async getMany(ids: readonly string[]): Promise<Map<string, DeviceRecord>> {
    const found = new Map<string, DeviceRecord>();
    for (const chunk of chunksOf([...new Set(ids)], ID_CHUNK)) {
      const rows = await this.db.all(`SELECT * FROM devices WHERE id IN (${chunk.map(() => '?').join(', ')})`, chunk);
      for (const row of rows) found.set(String(row.id), toDevice(row));
    }
    return found;
  }

  /** The ids among `ids` of live devices (enrolled, not revoked): a few light queries for thousands of ids. */
  async liveAmong(ids: readonly string[]): Promise<Set<string>> {
    const live = new Set<string>();
    for (const chunk of chunksOf([...new Set(ids)], ID_CHUNK)) {
      const rows = await this.db.all(`SELECT id FROM devices WHERE revoked_at IS NULL AND id IN (${chunk.map(() => '?').join(', ')})`, chunk);
      for (const row of rows) live.add(String(row.id));
    }
    return live;
  }

  /**
   * Every device (revoked ones too unless `live`), by id; a page with `after` (the last id of the
   * previous page) and `limit`.
   */
  async list(options: { live?: boolean; after?: string; limit?: number } = {}): Promise<DeviceRecord[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    if (options.live) where.push('revoked_at IS NULL');
    if (options.after !== undefined) {
      where.push('id > ?');
      params.push(options.after);
    }
    const limit = options.limit === undefined ? '' : ' LIMIT ?';
    if (options.limit !== undefined) params.push(options.limit);
    const rows = await this.db.all(`SELECT * FROM devices${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id${limit}`, params);
    return rows.map(toDevice);
  }

  /** Live (not revoked) devices, how many of them are online, and the revoked ones (which the device list pages through too). */
  async count(): Promise<{ enrolled: number; online: number; revoked: number }> {
    const row = await this.db.get(
      'SELECT COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), 0) AS enrolled, COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN online ELSE 0 END), 0) AS online, ' +
        'COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END), 0) AS revoked FROM devices',
    );
    return { enrolled: Number(row?.enrolled ?? 0), online: Number(row?.online ?? 0), revoked: Number(row?.revoked ?? 0) };
  }

  /** False when there is no such live device. */
  async revoke(id: string, at: string): Promise<boolean> {
    return (await this.db.run('UPDATE devices SET revoked_at = ?, online = 0, retained_assignment = NULL WHERE id = ? AND revoked_at IS NULL', [at, id])).changes > 0;
  }

  /** False when nothing was written (no such device, or it is revoked). */
  async setStatus(id: string, online: boolean, since: string, seenAt: string): Promise<boolean> {
    // Never for a revoked device: a status read after its revocation must not show it online again.
    // The status already stored (same state, same since) is the broker handing the retained one
    // over again at the server's every (re)subscription, not the device being seen: last_seen stays.
    const sql = `UPDATE devices SET last_seen = CASE WHEN online = ? AND online_since = ? THEN last_seen ELSE ? END, online = ?, online_since = ?
      WHERE id = ? AND revoked_at IS NULL`;
    const state = online ? 1 : 0;
    return (await this.db.run(sql, [state, since, seenAt, state, since, id])).changes > 0;
  }

  /**
   * A heartbeat: the slots as the device reports them, its resource use, and that it is online
   * when it announces its interval (never for a revoked device); and the device's served totals after it, in the same column
   * (the heartbeat the next one is compared with and the totals it led to change together, so a
   * crash in between cannot count a heartbeat twice or never). Written only if the row still
   * holds the heartbeat and served totals `served.after` read: another writer's heartbeat in
   * between (e.g. a deposed leader's last one), an answer that dropped served totals
   * (setServingTotals), or the device's online state changed, makes it false, with nothing
   * written (read it again).
   */
  async recordTelemetry(telemetry: Telemetry, seenAt: string, served: { totals: readonly ServingTotal[]; after: DeviceRecord }): Promise<boolean> {
    const result = await this.db.run(
      `UPDATE devices SET online = CASE WHEN ? = 1 THEN 1 ELSE online END, last_seen = ?, active = ?, candidate = ?, previous = ?, heartbeat_at = ?,
         uptime_seconds = ?, cpu_percent = ?, rss_bytes = ?, heartbeat_interval = ?, serving = ?, assignment_seq = ?
         WHERE id = ? AND revoked_at IS NULL AND COALESCE(heartbeat_at, '') = ? AND COALESCE(serving, '') = ? AND online = ?`,
      [
        // Only a heartbeat that says when the next one is due shows the device online: the silent-device
        // sweep takes it back when none comes. One that does not (an agent that predates it) leaves online to statuses.
        telemetry.intervalSeconds !== undefined ? 1 : 0,
        seenAt,
        nullableJson(telemetry.active),
        nullableJson(telemetry.candidate),
        nullableJson(telemetry.previous),
        new Date(telemetry.sentAt).toISOString(),
        telemetry.uptimeSeconds,
        telemetry.cpuPercent,
        telemetry.rssBytes,
        telemetry.intervalSeconds ?? null,
        servingColumn(telemetry.serving ?? null, served.totals, telemetry.runId),
        telemetry.assignmentSeq ?? null,
        telemetry.deviceId,
        served.after.heartbeat?.at ?? '',
        (servingRead.has(served.after) ? servingRead.get(served.after) : servingColumn(served.after.heartbeat?.serving ?? null, served.after.servingTotals, served.after.heartbeat?.runId)) ?? '',
        // Marked offline meanwhile (the silent-device sweep, a status): read again, so its return is told.
        served.after.online ? 1 : 0,
      ],
    );
    return result.changes > 0;
  }

  /**
   * The device's served totals after an answer moved its slots (those of label sets the move
   * removes go, as their series do), kept with the heartbeat counters `device` holds (read with
   * the row locked, in the answer's transaction). A heartbeat read before it is written again.
   */
  async setServingTotals(device: DeviceRecord, totals: readonly ServingTotal[]): Promise<void> {
    await this.db.run('UPDATE devices SET serving = ? WHERE id = ?', [servingColumn(device.heartbeat?.serving ?? null, totals, device.heartbeat?.runId), device.id]);
  }

  async setSlots(id: string, slots: DeviceSlots, seenAt: string): Promise<void> {
    await this.db.run('UPDATE devices SET active = ?, candidate = ?, previous = ?, last_seen = ? WHERE id = ?', [
      nullableJson(slots.active),
      nullableJson(slots.candidate),
      nullableJson(slots.previous),
      seenAt,
      id,
    ]);
  }

  /** The device's benchmark totals (written in the transaction that stores the benchmark or the answer that moves its slots). */
  async setReportTotals(id: string, totals: readonly ReportTotal[]): Promise<void> {
    await this.db.run('UPDATE devices SET report_totals = ? WHERE id = ?', [toJsonColumn(totals), id]);
  }

  /** Sets the device's benchmark totals only if none are stored yet (a seed must not replace what a benchmark wrote meanwhile). */
  async seedReportTotals(id: string, totals: readonly ReportTotal[]): Promise<void> {
    await this.db.run('UPDATE devices SET report_totals = ? WHERE id = ? AND report_totals IS NULL', [toJsonColumn(totals), id]);
  }

  async setRetainedAssignment(id: string, assignment: Assignment | null): Promise<void> {
    await this.db.run('UPDATE devices SET retained_assignment = ? WHERE id = ?', [nullableJson(assignment), id]);
  }

  /**
   * The live devices shown online that announce their heartbeat interval and were last heard
   * before `seenBefore` (an ISO time; `last_seen` is one too, so they compare as text): when the
   * server last heard from each (`lastSeen`, server time) and that interval.
   */
  async onlineWithInterval(seenBefore: string): Promise<{ id: string; lastSeen: string; intervalSeconds: number }[]> {
    const rows = await this.db.all('SELECT id, last_seen, heartbeat_interval FROM devices WHERE online = 1 AND revoked_at IS NULL AND heartbeat_interval IS NOT NULL AND last_seen < ? ORDER BY id', [seenBefore]);
    return rows.map((row) => ({ id: String(row.id), lastSeen: String(row.last_seen), intervalSeconds: Number(row.heartbeat_interval) }));
  }

  /**
   * Marks a device offline that went silent: only if the server has not heard from it since
   * `lastSeen` (a heartbeat or status stored meanwhile keeps it online). False when it had.
   */
  async markSilent(id: string, lastSeen: string): Promise<boolean> {
    return (await this.db.run('UPDATE devices SET online = 0 WHERE id = ? AND online = 1 AND last_seen = ?', [id, lastSeen])).changes > 0;
  }

  /** At start-up nobody is connected yet; devices announce themselves again (retained status or reconnect). */
  async markAllOffline(): Promise<void> {
    await this.db.run('UPDATE devices SET online = 0 WHERE online = 1');
  }
}

function nullableJson(value: unknown): string | null {
  return value === null || value === undefined ? null : toJsonColumn(value);
}

function nullableString(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/**
 * The `serving` column: the heartbeat's counters (or none), under `runId` the agent run they count
 * in (the next heartbeat's counters are compared with these only within the same run), and under
 * `totals` the served totals.
 */
function servingColumn(serving: Telemetry['serving'] | null, totals: readonly ServingTotal[], runId: string | undefined): string | null {
  if (!serving && totals.length === 0) return null;
  return toJsonColumn({ ...serving, ...(serving && runId !== undefined ? { runId } : {}), ...(totals.length > 0 ? { totals } : {}) });
}

/** The `serving` column read back: the heartbeat's counters (null without them) and the served totals. */
function servingOf(text: unknown): { counters: Telemetry['serving'] | null; runId?: string; totals: ServingTotal[] } {
  const stored = fromNullableJsonColumn<Record<string, unknown>>(text);
  if (stored === null || typeof stored !== 'object') return { counters: null, totals: [] };
  const { totals, runId, ...counters } = stored;
  const hasCounters = typeof counters.predictions === 'number';
  return {
    counters: hasCounters ? (counters as Telemetry['serving']) : null,
    ...(hasCounters && typeof runId === 'string' ? { runId } : {}),
    totals: servingTotalsOf(totals),
  };
}

/** The stored served totals; entries that are not well-formed are left out (they never fail a read). */
function servingTotalsOf(parsed: unknown): ServingTotal[] {
  if (!Array.isArray(parsed)) return [];
  const count = (value: unknown) => typeof value === 'number' && Number.isFinite(value) && value >= 0;
  return parsed.filter(
    (entry): entry is ServingTotal =>
      typeof entry === 'object' && entry !== null &&
      typeof entry.model === 'string' && typeof entry.version === 'string' && (entry.role === 'active' || entry.role === 'candidate') &&
      typeof entry.cohort === 'string' && count(entry.predictions) && count(entry.errors) && count(entry.ratio) && typeof entry.at === 'string',
  );
}

/** The stored benchmark totals (null: none kept yet); entries that are not well-formed are left out (they never fail a read). */
function reportTotalsOf(text: unknown): ReportTotal[] | null {
  if (text === null || text === undefined) return null;
  let parsed: unknown;
  try {
    parsed = fromNullableJsonColumn<unknown>(text);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const count = (value: unknown) => typeof value === 'number' && Number.isFinite(value) && value >= 0;
  const number = (value: unknown) => typeof value === 'number' && Number.isFinite(value);
  const latest = (value: unknown) => {
    if (typeof value !== 'object' || value === null) return false;
    const l = value as Record<string, unknown>;
    const latency = l.latencyMs as Record<string, unknown> | null | undefined;
    return (l.accuracy === null || number(l.accuracy)) && (l.mse === null || number(l.mse)) && count(l.predictions) && count(l.errors) &&
      typeof l.ts === 'string' && (l.receivedAt === undefined || (typeof l.receivedAt === 'string' && Number.isFinite(Date.parse(l.receivedAt)))) && typeof latency === 'object' && latency !== null && number(latency.p50) && number(latency.p95) && number(latency.p99);
  };
  return parsed.filter(
    (entry): entry is ReportTotal =>
      typeof entry === 'object' && entry !== null &&
      typeof entry.model === 'string' && typeof entry.version === 'string' && (entry.role === 'active' || entry.role === 'candidate') &&
      typeof entry.cohort === 'string' && count(entry.predictions) && count(entry.errors) && count(entry.reports) && latest(entry.latest) && typeof entry.at === 'string' &&
      (entry.since === undefined || typeof entry.since === 'string'),
  );
}

/**
 * The `serving` column as each record read it: recordTelemetry writes only over that very text
 * (compare-and-set). Records built elsewhere (tests) are compared as the column they would make.
 */
const servingRead = new WeakMap<DeviceRecord, string | null>();

function toDevice(row: Record<string, unknown>): DeviceRecord {
  const device = deviceOf(row);
  servingRead.set(device, row.serving === null || row.serving === undefined ? null : String(row.serving));
  return device;
}

function deviceOf(row: Record<string, unknown>): DeviceRecord {
  const serving = servingOf(row.serving);
  return {
    id: String(row.id),
    labels: fromJsonColumn<Record<string, string>>(row.labels),
    secretHash: String(row.secret_hash),
    tokenId: String(row.token_id),
    enrolledAt: String(row.enrolled_at),
    enrolledBy: String(row.enrolled_by),
    revokedAt: nullableString(row.revoked_at),
    online: Number(row.online) === 1,
    onlineSince: nullableString(row.online_since),
    lastSeen: nullableString(row.last_seen),
    active: fromNullableJsonColumn<ModelRef>(row.active),
    candidate: fromNullableJsonColumn<ModelRef>(row.candidate),
    previous: fromNullableJsonColumn<ModelRef>(row.previous),
    heartbeat:
      row.heartbeat_at === null || row.heartbeat_at === undefined
        ? null
        : {
            at: String(row.heartbeat_at),
            uptimeSeconds: Number(row.uptime_seconds),
            cpuPercent: Number(row.cpu_percent),
            rssBytes: Number(row.rss_bytes),
            serving: serving.counters,
            ...(serving.runId !== undefined ? { runId: serving.runId } : {}),
            ...(row.heartbeat_interval !== null && row.heartbeat_interval !== undefined ? { intervalSeconds: Number(row.heartbeat_interval) } : {}),
            ...(row.assignment_seq !== null && row.assignment_seq !== undefined ? { assignmentSeq: Number(row.assignment_seq) } : {}),
          },
    servingTotals: serving.totals,
    reportTotals: reportTotalsOf(row.report_totals),
    retainedAssignment: fromNullableJsonColumn<Assignment>(row.retained_assignment),
    signingKeyId: nullableString(row.signing_key_id),
  };
}
