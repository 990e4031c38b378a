import type { Dialect, SqlExecutor } from '../sql-engine.ts';
import { fromJsonColumn, fromNullableJsonColumn, toJsonColumn } from './json-column.ts';

/**
 * A job's state. `succeeded`, `failed` and `cancelled` are final: `cancelled` is a cancel that
 * took effect (`jobs cancel`, its `error` "cancelled by <actor>"), `failed` everything else that
 * ended it without a result (bad data, a fault, a server that shut down or restarted meanwhile).
 */
export type JobState = (typeof JOB_STATES)[number];

/** Every state, unfinished first (the REST and OpenAPI enum). */
export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

/** The states a job ends in: it never leaves them. */
export const FINISHED_JOB_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

export interface JobRecord {
  id: string;
  kind: string;
  state: JobState;
  request: unknown;
  progress: unknown;
  result: unknown;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string;
  /** The server (--node-id) that accepted and runs the job; null for jobs from before nodes. */
  node: string | null;
}

/** The database's clock in whole epoch seconds: servers sharing a database compare leases on one clock, not on theirs. */
const DATABASE_NOW: Record<Dialect, string> = {
  sqlite: "CAST(strftime('%s', 'now') AS INTEGER)",
  postgres: 'CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)',
};

const UNFINISHED = "state IN ('queued', 'running')";

/** SQL for background jobs and their persisted state. */
export class JobsRepository {
  readonly #now: string;

  constructor(
    private readonly db: SqlExecutor,
    dialect: Dialect,
  ) {
    this.#now = DATABASE_NOW[dialect];
  }

  async insert(job: JobRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO jobs (id, kind, state, request, progress, result, error, created_at, updated_at, created_by, node, renewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${this.#now})`,
      [
        job.id,
        job.kind,
        job.state,
        toJsonColumn(job.request),
        job.progress === null ? null : toJsonColumn(job.progress),
        job.result === null ? null : toJsonColumn(job.result),
        job.error,
        job.createdAt,
        job.updatedAt,
        job.createdBy,
        job.node,
      ],
    );
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = await this.db.get('SELECT * FROM jobs WHERE id = ?', [id]);
    return row ? toJob(row) : undefined;
  }

  /** The newest jobs: at most `limit` after skipping the `offset` newest (skipped in SQL). */
  async list(limit = 100, offset = 0): Promise<JobRecord[]> {
    return (await this.db.all('SELECT * FROM jobs ORDER BY created_at DESC, id LIMIT ? OFFSET ?', [limit, offset])).map(toJob);
  }

  /** How many jobs there are (every state): what `list` shows the newest of. */
  async count(): Promise<number> {
    const row = await this.db.get('SELECT COUNT(*) AS n FROM jobs');
    return Number(row?.n ?? 0);
  }

  /**
   * Applies `changes`; with `from`, only while the job is in one of those states (a compare-and-set:
   * a cancel and the job's own run cannot both decide how it ends). True when the row changed.
   */
  async update(
    id: string,
    changes: { state?: JobState; progress?: unknown; result?: unknown; error?: string | null },
    at: string,
    from?: readonly JobState[],
  ): Promise<boolean> {
    const sets: string[] = ['updated_at = ?'];
    const params: (string | null)[] = [at];
    if (changes.state !== undefined) (sets.push('state = ?'), params.push(changes.state));
    if (changes.progress !== undefined) (sets.push('progress = ?'), params.push(toJsonColumn(changes.progress)));
    if (changes.result !== undefined) (sets.push('result = ?'), params.push(toJsonColumn(changes.result)));
    if (changes.error !== undefined) (sets.push('error = ?'), params.push(changes.error));
    const guard = from ? ` AND state IN (${from.map(() => '?').join(', ')})` : '';
    const { changes: count } = await this.db.run(`UPDATE jobs SET ${sets.join(', ')} WHERE id = ?${guard}`, [...params, id, ...(from ?? [])]);
    return count > 0;
  }

  /** Fails the unfinished jobs of `node` (and those with no node) with `reason`; other servers' are left running. Returns their ids. */
  async failUnfinished(reason: string, at: string, node: string): Promise<string[]> {
    const mine = "state IN ('queued', 'running') AND (node = ? OR node IS NULL)";
    const rows = await this.db.all(`SELECT id FROM jobs WHERE ${mine}`, [node]);
    await this.db.run(`UPDATE jobs SET state = 'failed', error = ?, updated_at = ? WHERE ${mine}`, [reason, at, node]);
    return rows.map((row) => String(row.id));
  }

  /** Renews the lease of every unfinished job of `node` (its server is alive); returns how many. */
  async renewLeases(node: string): Promise<number> {
    return (await this.db.run(`UPDATE jobs SET renewed_at = ${this.#now} WHERE node = ? AND ${UNFINISHED}`, [node])).changes;
  }

  /**
   * Renews the lease of one running job of `node` and says whether it is still running there: a
   * job about to register its models checks (and, in the same transaction, locks) that no other
   * server has failed it meanwhile as abandoned.
   */
  async renewIfRunning(id: string, node: string): Promise<boolean> {
    return (await this.db.run(`UPDATE jobs SET renewed_at = ${this.#now} WHERE id = ? AND node = ? AND state = 'running'`, [id, node])).changes > 0;
  }

  /**
   * Fails the unfinished jobs of other servers whose leases have not been renewed for
   * `staleSeconds` (their server is gone: decommissioned, crashed for good, cut off); `reason`
   * gets the node's name. Jobs without a lease (from before leases) are left alone. Returns the
   * failed jobs' ids and nodes.
   */
  async failAbandoned(reason: (node: string) => string, at: string, exceptNode: string, staleSeconds: number): Promise<{ id: string; node: string }[]> {
    const stale = `${UNFINISHED} AND node IS NOT NULL AND node <> ? AND renewed_at IS NOT NULL AND renewed_at < ${this.#now} - ?`;
    const failed: { id: string; node: string }[] = [];
    for (const row of await this.db.all(`SELECT DISTINCT node FROM jobs WHERE ${stale}`, [exceptNode, staleSeconds])) {
      const node = String(row.node);
      const rows = await this.db.all(`UPDATE jobs SET state = 'failed', error = ?, updated_at = ? WHERE node = ? AND ${stale} RETURNING id`, [reason(node), at, node, exceptNode, staleSeconds]);
      failed.push(...rows.map((job) => ({ id: String(job.id), node })));
    }
    return failed;
  }

  /** The nodes (--node-id) that have queued or running jobs. */
  async nodesWithUnfinished(): Promise<string[]> {
    const rows = await this.db.all("SELECT DISTINCT node FROM jobs WHERE state IN ('queued', 'running') AND node IS NOT NULL ORDER BY node");
    return rows.map((row) => String(row.node));
  }
}

function toJob(row: Record<string, unknown>): JobRecord {
  return {
    id: String(row.id),
    kind: String(row.kind),
    state: String(row.state) as JobState,
    request: fromJsonColumn(row.request),
    progress: fromNullableJsonColumn(row.progress),
    result: fromNullableJsonColumn(row.result),
    error: row.error === null ? null : String(row.error),
    createdAt: String(row.created_at),
    updatedAt: String(row.updated_at),
    createdBy: String(row.created_by),
    node: row.node === null || row.node === undefined ? null : String(row.node),
  };
}
