import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../../shared/util/log.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { PostgresEngine } from '../store/postgres-engine.ts';
import type { SqlEngine } from '../store/sql-engine.ts';

/**
 * Which server process drives rollouts. With PostgreSQL several servers share one database and
 * exactly one holds a session-level advisory lock on a dedicated connection; with SQLite the
 * single process is always the leader.
 */
export interface LeaderStatus {
  readonly engine: 'sqlite' | 'postgres';
  /** This process: host:pid:random. */
  readonly instance: string;
  readonly isLeader: boolean;
  /** When this process became leader (ISO-8601), null when it is not. */
  readonly leaderSince: string | null;
  /** The instance holding the lock, when the database tells (null: nobody, or not visible). */
  readonly leader: string | null;
}

export interface LeadershipHandlers {
  /** This process became leader (start driving rollouts). */
  elected(): Promise<void>;
  /** This process lost leadership (stop driving at once). */
  deposed(): void;
  /**
   * The server is stopping: a takeover still in progress (elected() waiting for an external broker)
   * gives up now rather than at its next retry, so that it does not hold shutdown up; elected()
   * may then reject. Called before the leadership's stop().
   */
  stopping?(): void;
}

export interface Leadership {
  start(handlers: LeadershipHandlers): Promise<void>;
  status(): Promise<LeaderStatus>;
  stop(): Promise<void>;
  /**
   * Whether this leader's takeover failed for good: it leads, and will not drive the rollouts or
   * hold the broker before a restart (a single server whose takeover failed after its start went
   * on). A leader on PostgreSQL gives the lead up instead, so it never says so.
   */
  takeoverFailed?(): boolean;
}

/**
 * This process among the servers: `<node id>:<pid>:<random>`, so a follower's refusal names the
 * leader by the --node-id operators gave it. At most 37 characters: with the prefix it is the lock
 * session's application_name, which PostgreSQL cuts at 63 bytes.
 */
export function newInstanceId(node: string = hostname()): string {
  const kept = node.length > NODE_CHARS ? `${node.slice(0, NODE_CHARS - 1)}${CUT_MARK}` : node;
  return `${kept}:${process.pid}:${randomBytes(3).toString('hex')}`;
}
const NODE_CHARS = 22;
const CUT_MARK = '~';

/**
 * The leader as an operator finds it: `node-a (process 7, instance node-a:7:123456; …)`, by its --node-id.
 * The instance id alone read as an address no one could send to. An instance id of another form
 * (an older server's) is named as it is.
 */
export function describeLeader(instance: string): string {
  const match = /^(.*):(\d+):([0-9a-f]{6})$/.exec(instance);
  if (!match) return instance;
  // An instance id keeps the first characters of a long node id (a host name such as
  // ip-10-0-12-34.eu-west-1.compute.internal) and marks the cut with a ~: named by its beginning, said so.
  const cut = match[1]!.endsWith(CUT_MARK) && match[1]!.length === NODE_CHARS;
  // A server from before the mark cut a long node id to 22 characters without one: it may be whole, or the beginning.
  const maybeCut = !cut && match[1]!.length === NODE_CHARS;
  const node = cut ? `${match[1]!.slice(0, -1)}… (its --node-id begins so; ` : maybeCut ? `${match[1]} (its --node-id, or the beginning of it; ` : `${match[1]} (`;
  return `${node}process ${match[2]}, instance ${instance}; a load balancer finds it by GET /readyz?role=leader)`;
}

/** SQLite: one process owns the database file, so it leads from start to stop. */
export class SingleProcessLeadership implements Leadership {
  readonly #instance: string;
  readonly #log: Logger | undefined;
  readonly #startWaitMs: number;
  #since: string | null = null;
  #failed = false;
  #stopped = false;

  constructor(instance: string = newInstanceId(), options: { log?: Logger; startWaitMs?: number } = {}) {
    this.#instance = instance;
    this.#log = options.log;
    this.#startWaitMs = options.startWaitMs ?? START_WAIT_MS;
  }

  /**
   * Takes over at once. A takeover that cannot finish yet (an external broker that is down: the
   * fleet keeps retrying) goes on in the background after the start wait, as on PostgreSQL, so
   * that a restart during a broker outage still serves reads, the dashboard and health; a
   * takeover that fails within the wait fails the start.
   */
  async start(handlers: LeadershipHandlers): Promise<void> {
    this.#since = new Date().toISOString();
    const takeover = handlers.elected();
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), this.#startWaitMs)));
    try {
      if ((await Promise.race([takeover, waited])) !== 'waiting') return;
    } finally {
      clearTimeout(timer);
    }
    this.#log?.warn({ instance: this.#instance }, `still taking over rollouts after ${this.#startWaitMs / 1000} s; starting meanwhile (fleet changes are refused until the takeover is done)`);
    takeover.catch((error: unknown) => {
      if (this.#stopped) return this.#log?.info({ err: errorMessage(error) }, 'the takeover of rollouts was given up: the server is stopping');
      this.#failed = true;
      this.#log?.error({ err: errorMessage(error) }, `the takeover of rollouts failed: ${errorMessage(error)}`);
    });
  }

  takeoverFailed(): boolean {
    return this.#failed;
  }

  async status(): Promise<LeaderStatus> {
    return { engine: 'sqlite', instance: this.#instance, isLeader: this.#since !== null, leaderSince: this.#since, leader: this.#since ? this.#instance : null };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#since = null;
  }
}

/** First key of the two-key advisory lock: "FPRL" (fleetprune rollout leader). */
export const LOCK_CLASS = 0x4650524c;
/** Second key: per schema, so servers on different schemas of one database do not contend. */
export const LOCK_KEY_SQL = "hashtext('fleetprune:rollout-leader:' || current_schema())";
const APPLICATION_NAME_PREFIX = 'fleetprune-rollout-leader ';
/** How long the leader's periodic check of its connection may take before it steps down. */
const CHECK_TIMEOUT_MS = 10_000;
/**
 * The lock session's own liveness, which PostgreSQL enforces: a leader whose host died, froze or
 * was cut off sends no more checks, and PostgreSQL ends its session (releasing the lock) after
 * this long idle, or once TCP keepalives or unacknowledged data find the peer gone. Without them
 * the lock outlived a dead host by TCP's default two hours, and no server drove the rollouts.
 */
const LOCK_SESSION_IDLE_MS = 15_000;
const LOCK_SESSION_SETTINGS = ['SET tcp_keepalives_idle = 5', 'SET tcp_keepalives_interval = 2', 'SET tcp_keepalives_count = 3', 'SET tcp_user_timeout = 10000'];
/** How long stop() waits for a tick in progress, and for the unlock. */
const STOP_WAIT_MS = 5_000;
/** How often the election says PostgreSQL still does not answer it. */
const UNREACHABLE_LOG_EVERY_MS = 60_000;
/** How long start() waits for the first election's takeover before going on without it. */
const START_WAIT_MS = 15_000;

/**
 * The rollout leader lock of the session's schema: whether a server holds it, and its instance
 * name (null when it is not held, or its holder gave none). `get` runs one query ($1 placeholders).
 */
export async function rolloutLeaderLock(get: (sql: string, params: unknown[]) => Promise<{ application_name?: unknown } | undefined>): Promise<{ held: boolean; leader: string | null }> {
  const row = await get(
    `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = $1::int4::oid AND l.objid = (${LOCK_KEY_SQL})::oid`,
    [LOCK_CLASS],
  );
  const name = typeof row?.application_name === 'string' ? row.application_name : '';
  return { held: row !== undefined, leader: name.startsWith(APPLICATION_NAME_PREFIX) ? name.slice(APPLICATION_NAME_PREFIX.length) : null };
}

/** The promise's value, or undefined if it has not settled within `ms` (a rejection counts as settled). */
async function withinMs<T>(promise: Promise<T> | undefined, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise?.catch(() => undefined), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface PostgresLeadershipOptions {
  readonly pool: pg.Pool;
  readonly log: Logger;
  readonly instance?: string;
  /** How often a follower tries the lock and the leader checks its connection (default 2 s). */
  readonly pollMs?: number;
  /** How long start() waits for a first takeover before going on without it (default 15 s). */
  readonly startWaitMs?: number;
}

/**
 * PostgreSQL: `pg_try_advisory_lock` on a connection checked out of the pool and held for as
 * long as this process leads. When the leader dies its connection drops and PostgreSQL releases
 * the lock; a follower's next poll (every pollMs) takes it. The leader checks its connection on
 * the same period and steps down when the connection fails.
 */
export class PostgresLeadership implements Leadership {
  readonly #o: PostgresLeadershipOptions;
  readonly #instance: string;
  readonly #pollMs: number;
  #handlers: LeadershipHandlers | undefined;
  #client: pg.PoolClient | undefined;
  #since: string | null = null;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #ticking: Promise<void> = Promise.resolve();
  /** Since when PostgreSQL has not answered the election (null: it answers), and when that was last logged. */
  #unreachable: { since: number; loggedAt: number; failures: number } | null = null;
  /** Whether the server said it stands by (once each time it finds another server leading). */
  #saidStandby = false;

  constructor(options: PostgresLeadershipOptions) {
    this.#o = options;
    this.#instance = options.instance ?? newInstanceId();
    this.#pollMs = options.pollMs ?? 2000;
  }

  /**
   * Runs the first election. A takeover that cannot finish yet (its external broker is down: the
   * fleet keeps retrying) goes on in the background after START_WAIT_MS, so that the server still
   * starts and serves reads, the dashboard and its health endpoints meanwhile.
   */
  async start(handlers: LeadershipHandlers): Promise<void> {
    this.#handlers = handlers;
    const first = this.#tick().then(() => 'done' as const);
    const waitMs = this.#o.startWaitMs ?? START_WAIT_MS;
    if ((await withinMs(first, waitMs)) === undefined) {
      this.#o.log.warn({ instance: this.#instance }, `still taking over rollouts after ${waitMs / 1000} s; starting meanwhile (fleet changes are refused until the takeover is done)`);
    }
  }

  async status(): Promise<LeaderStatus> {
    let leader: string | null = this.#client ? this.#instance : null;
    if (!this.#client) {
      try {
        leader = (await rolloutLeaderLock(async (sql, params) => (await this.#o.pool.query(sql, params)).rows[0])).leader;
      } catch (error) {
        this.#o.log.warn({ err: errorMessage(error) }, `cannot look up the rollout leader: ${errorMessage(error)}`);
      }
    }
    return { engine: 'postgres', instance: this.#instance, isLeader: this.#client !== undefined, leaderSince: this.#since, leader };
  }

  /**
   * Gives the lock up. Waits a bounded time for a tick in progress (a takeover still connecting to
   * an unreachable broker must not hold shutdown up), then unlocks, or drops the connection, which
   * releases the lock as well.
   */
  stop(): Promise<void> {
    // Once: a second call (a shutdown path and a cleanup both stopping it) waits for the first
    // rather than for a takeover that never finishes all over again.
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await withinMs(this.#ticking, STOP_WAIT_MS);
    const client = this.#client;
    if (!client) return;
    this.#client = undefined;
    this.#since = null;
    await withinMs(client.query(`SELECT pg_advisory_unlock($1, ${LOCK_KEY_SQL})`, [LOCK_CLASS]), STOP_WAIT_MS);
    // Never back to the pool (closing it releases the lock anyway): the session carries the lock
    // session's idle timeout, which would end it while it waits there.
    client.release(true);
  }

  /**
   * The election tries every poll while PostgreSQL is down (every 2 s): one warning line when it
   * stops answering, then one a minute saying for how long, each without a stack (a connection
   * refused or timed out is not a bug of the server).
   */
  #cannotReach(error: unknown): void {
    const now = Date.now();
    const down = (this.#unreachable ??= { since: now, loggedAt: 0, failures: 0 });
    down.failures += 1;
    if (now - down.loggedAt < UNREACHABLE_LOG_EVERY_MS) return;
    down.loggedAt = now;
    const still = down.failures > 1 ? `still, for ${Math.round((now - down.since) / 1000)} s (${down.failures} tries); ` : '';
    this.#o.log.warn({ err: errorMessage(error) }, `rollout leader election: cannot reach PostgreSQL: ${still}${errorMessage(error)}`);
  }

  #tick(): Promise<void> {
    this.#ticking = (this.#client ? this.#check() : this.#tryAcquire()).finally(() => {
      if (!this.#stopped) this.#timer = setTimeout(() => void this.#tick(), this.#pollMs);
    });
    return this.#ticking;
  }

  async #tryAcquire(): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.#o.pool.connect();
    } catch (error) {
      this.#cannotReach(error);
      return;
    }
    if (this.#unreachable) {
      this.#o.log.info({ downForS: Math.round((Date.now() - this.#unreachable.since) / 1000) }, 'rollout leader election: PostgreSQL answers again');
      this.#unreachable = null;
    }
    // Until the lock is ours nobody else listens: a connection lost meanwhile must not crash the process.
    const lostEarly = () => {};
    client.on('error', lostEarly);
    try {
      const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock($1, ${LOCK_KEY_SQL}) AS locked`, [LOCK_CLASS]);
      if (!rows[0]?.locked || this.#stopped) {
        if (rows[0]?.locked) await client.query(`SELECT pg_advisory_unlock($1, ${LOCK_KEY_SQL})`, [LOCK_CLASS]);
        client.off('error', lostEarly);
        client.release();
        if (!rows[0]?.locked && !this.#saidStandby) {
          this.#saidStandby = true;
          const { leader } = await this.status();
          this.#o.log.info({ instance: this.#instance, leader }, `standing by: ${leader ?? 'another server'} leads rollouts; this server takes over if it goes`);
        }
        return;
      }
      await client.query(`SET application_name = '${APPLICATION_NAME_PREFIX}${this.#instance.replace(/'/g, '')}'`);
      // Well above the checks' interval: only a leader that stopped checking goes idle this long.
      const idle = `SET idle_session_timeout = ${Math.max(LOCK_SESSION_IDLE_MS, 5 * this.#pollMs)}`;
      for (const setting of [idle, ...LOCK_SESSION_SETTINGS]) {
        // Each on its own: an older PostgreSQL (idle_session_timeout is 14+) or a platform without
        // TCP_USER_TIMEOUT refuses one, and the others still hold.
        await client.query(setting).catch((error: unknown) => this.#o.log.debug({ err: errorMessage(error) }, `rollout leader session: ${setting} refused`));
      }
    } catch (error) {
      client.off('error', lostEarly);
      client.release(true);
      this.#o.log.warn({ err: errorMessage(error) }, `rollout leader election failed: ${errorMessage(error)}`);
      return;
    }
    client.off('error', lostEarly);
    client.on('error', (error) => this.#lose(`the leader connection failed: ${errorMessage(error)}`));
    this.#client = client;
    this.#since = new Date().toISOString();
    this.#saidStandby = false;
    this.#o.log.info({ instance: this.#instance }, 'became the rollout leader');
    // The periodic checks wait for the takeover, which can take long (an external broker that does
    // not answer): meanwhile the same bounded check runs here. It keeps the lock session from going
    // idle (PostgreSQL would end it as a silent leader's after LOCK_SESSION_IDLE_MS), and a leader
    // whose connection went silent steps down, as it would after the takeover: else it would go on
    // waiting for its broker, and drive the rollouts once connected, while another server leads.
    let checking = false;
    const busy = setInterval(() => {
      // Stopped or lost meanwhile (a takeover that never finishes must not keep this going).
      if (this.#client !== client) return clearInterval(busy);
      if (checking) return;
      checking = true;
      void this.#check().finally(() => (checking = false));
    }, Math.min(this.#pollMs, LOCK_SESSION_IDLE_MS / 3));
    busy.unref();
    try {
      await this.#handlers?.elected();
    } catch (error) {
      // Given up because the server is stopping: stop() unlocks and releases the connection.
      if (this.#stopped) {
        this.#o.log.info({ err: errorMessage(error) }, 'the takeover of rollouts was given up: the server is stopping');
        return;
      }
      // Deposed meanwhile (its connection failed, logged then): the takeover gave up because of it,
      // which the server mends by itself at its next poll; one line, not an error with its stack.
      if (this.#client !== client) {
        this.#o.log.info({ err: errorMessage(error) }, 'the takeover of rollouts was given up: no longer the rollout leader');
        return;
      }
      // Holding the lock without driving the rollouts would block every other server: let it go,
      // so that this one (at its next poll) or another takes over again.
      this.#o.log.error({ err: error }, `taking over rollouts failed: ${errorMessage(error)}`);
      this.#lose(`taking over rollouts failed: ${errorMessage(error)}`);
    } finally {
      clearInterval(busy);
    }
  }

  async #check(): Promise<void> {
    const client = this.#client!;
    let timer: NodeJS.Timeout | undefined;
    try {
      // A half-open connection would hang the check: a leader that cannot prove it holds the lock steps down.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS);
      });
      await Promise.race([client.query('SELECT 1'), timeout]);
    } catch (error) {
      // Only this connection's failure: a check that outlived it must not drop a newer one.
      if (this.#client === client) this.#lose(`the leader connection failed: ${errorMessage(error)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  #lose(why: string): void {
    const client = this.#client;
    if (!client) return;
    this.#client = undefined;
    this.#since = null;
    client.release(true);
    this.#o.log.error({ instance: this.#instance }, `no longer the rollout leader: ${why}`);
    this.#handlers?.deposed();
  }
}

/** PostgreSQL: the advisory-lock election (followers poll every `pollMs`); SQLite: always this process. */
export function leadershipFor(engine: SqlEngine, log: Logger, options: { pollMs?: number; node?: string; startWaitMs?: number } = {}): Leadership {
  const instance = newInstanceId(options.node);
  const startWait = options.startWaitMs !== undefined ? { startWaitMs: options.startWaitMs } : {};
  return engine.dialect === 'postgres'
    ? new PostgresLeadership({ pool: (engine as PostgresEngine).pool, log, instance, ...(options.pollMs ? { pollMs: options.pollMs } : {}), ...startWait })
    : new SingleProcessLeadership(instance, { log, ...startWait });
}
