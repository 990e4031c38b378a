import { hostname } from 'node:os';
import type pg from 'pg';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { PostgresEngine } from '../store/postgres-engine.ts';
import type { SqlEngine } from '../store/sql-engine.ts';

/**
 * This server's claim on its --node-id for as long as it runs. A start fails the unfinished jobs
 * of its node and clears their work directory (they are a previous process's): a second server
 * started with the same node id (the default is the host name, so two on one host collide) must
 * be refused before it does, or it wrecks the live server's jobs even when it is then refused
 * for something else (its HTTP port in use).
 */
export interface NodeLock {
  /** Takes the claim; a UserError when a live server holds it (nothing is changed then). */
  acquire(): Promise<void>;
  /** Whether this process holds the claim now (a lost one is tried once more); false if it never took it. */
  held(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * SQLite: the database is one data dir's, and `<data-dir>/server.lock` (start-server.ts) already
 * refuses a second server on it before the store is opened, so the claim is that lock's.
 */
class DataDirNodeLock implements NodeLock {
  #acquired = false;

  async acquire(): Promise<void> {
    this.#acquired = true;
  }

  async held(): Promise<boolean> {
    return this.#acquired;
  }

  async release(): Promise<void> {
    this.#acquired = false;
  }
}

/** The advisory lock's key: per schema (servers on other schemas of one database are other fleets) and per node. */
const LOCK_KEY_SQL = "hashtextextended('fleetprune-node:' || $1::text || '@' || coalesce(current_schema(), ''), 0)";
const APPLICATION_NAME_PREFIX = 'fleetprune-node ';
/** How often the lock's session is checked; the checks also keep it from going idle. */
const CHECK_MS = 3_000;
/** A check unanswered this long counts as a lost session (a half-open connection would hang it). */
const CHECK_TIMEOUT_MS = 10_000;
/**
 * As the rollout leader's session (leader-election.ts): a server whose host died or froze sends
 * no more checks, and PostgreSQL ends its session, releasing the node id, after this long idle or
 * once TCP keepalives find the peer gone. Without them a crashed host's claim outlived it by TCP's
 * two hours, and its restart was refused all that time.
 */
const SESSION_SETTINGS = [
  `SET idle_session_timeout = ${5 * CHECK_MS}`,
  'SET tcp_keepalives_idle = 5',
  'SET tcp_keepalives_interval = 2',
  'SET tcp_keepalives_count = 3',
  'SET tcp_user_timeout = 10000',
];

/**
 * PostgreSQL: a session-level `pg_try_advisory_lock` on a connection checked out of the pool and
 * kept while the server runs. When the server dies its session ends and PostgreSQL releases the
 * lock, so a restart (a supervisor's, after kill -9) takes it. A session lost while the server
 * runs (a database restart, a network cut) is retaken at the next check; meanwhile another server
 * may have taken the node id, which is logged: that server has failed this one's jobs.
 */
class PostgresNodeLock implements NodeLock {
  readonly #pool: pg.Pool;
  readonly #node: string;
  readonly #log: Logger;
  #client: pg.PoolClient | undefined;
  #acquired = false;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> = Promise.resolve();
  #stopped = false;
  #lossLogged = false;

  constructor(pool: pg.Pool, node: string, log: Logger) {
    this.#pool = pool;
    this.#node = node;
    this.#log = log;
  }

  async acquire(): Promise<void> {
    if (!(await this.#tryLock())) {
      throw new UserError(`--node-id ${this.#node} is in use by a live server (another fleetprune server on this database); give each server its own --node-id`);
    }
    this.#acquired = true;
    this.#schedule();
  }

  async held(): Promise<boolean> {
    if (!this.#acquired || this.#stopped) return false;
    await this.#serial(async () => {
      if (!this.#client) await this.#tryLock().catch(() => false);
    });
    return this.#client !== undefined;
  }

  async release(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#ticking;
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    await client.query(`SELECT pg_advisory_unlock(${LOCK_KEY_SQL})`, [this.#node]).catch(() => {});
    // Never back to the pool: the session carries the idle timeout, which would end it there.
    client.release(true);
  }

  /** Takes the lock on a connection of its own; false when another session holds it. */
  async #tryLock(): Promise<boolean> {
    const client = await this.#pool.connect();
    // A connection lost while checked out must not crash the process (the pool no longer listens).
    client.on('error', (error) => this.#lose(client, errorMessage(error)));
    try {
      const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${LOCK_KEY_SQL}) AS locked`, [this.#node]);
      if (!rows[0]?.locked) {
        client.release(true);
        return false;
      }
      await client.query(`SET application_name = '${APPLICATION_NAME_PREFIX}${`${hostname()}:${process.pid}`.replace(/'/g, '').slice(0, 40)}'`);
      for (const setting of SESSION_SETTINGS) {
        // Each on its own: an older PostgreSQL (idle_session_timeout is 14+) or a platform
        // without TCP_USER_TIMEOUT refuses one, and the others still hold.
        await client.query(setting).catch((error: unknown) => this.#log.debug({ err: errorMessage(error) }, `node lock session: ${setting} refused`));
      }
    } catch (error) {
      client.release(true);
      throw error;
    }
    this.#client = client;
    return true;
  }

  /** Runs `work` after the check or retake in progress: two at once would take a second session, refused by the first. */
  #serial(work: () => Promise<void>): Promise<void> {
    this.#ticking = this.#ticking.then(work).catch(() => {});
    return this.#ticking;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#serial(() => this.#tick()).finally(() => this.#schedule()), CHECK_MS);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const client = this.#client;
    if (client) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS)));
      try {
        await Promise.race([client.query('SELECT 1'), timeout]);
      } catch (error) {
        this.#lose(client, errorMessage(error));
      } finally {
        clearTimeout(timer);
      }
      return;
    }
    try {
      if (await this.#tryLock()) {
        this.#lossLogged = false;
        this.#log.warn({ node: this.#node }, `took the lock on --node-id ${this.#node} again`);
      } else if (!this.#lossLogged) {
        this.#lossLogged = true;
        this.#log.error({ node: this.#node }, `--node-id ${this.#node} is now held by another server on this database, which failed this server's unfinished jobs; give each server its own --node-id`);
      }
    } catch {
      // The database is unreachable: tried again at the next check.
    }
  }

  #lose(client: pg.PoolClient, why: string): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.release(true);
    if (!this.#stopped) this.#log.error({ node: this.#node }, `lost the lock on --node-id ${this.#node} (${why}); retaking it`);
  }
}

export function nodeLockFor(engine: SqlEngine, node: string, log: Logger): NodeLock {
  return engine.dialect === 'postgres' ? new PostgresNodeLock((engine as PostgresEngine).pool, node, log) : new DataDirNodeLock();
}
