import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { engineMissing, tcpReachable } from '../../helpers/engines.ts';
import { openStore, type StoreLocation } from '../../../server/store/open-store.ts';
import type { Store } from '../../../server/store/store.ts';
import { deferCleanup } from '../../helpers/cleanup.ts';

export const STORE_ENGINES = ['sqlite', 'postgres'] as const;
export type StoreEngineName = (typeof STORE_ENGINES)[number];

const PG_HOST = process.env.FLEETPRUNE_TEST_PG_HOST ?? '127.0.0.1';
const PG_PORT = Number(process.env.FLEETPRUNE_TEST_PG_PORT ?? 5432);

/** The URL that answered once in this process: PostgreSQL is there, and is not asked again (a busy one may be slow to answer). */
let answered: string | undefined;

/** The test PostgreSQL URL: trust auth, user postgres (or root), database `test`. Null when unreachable. */
export async function postgresUrl(): Promise<string | null> {
  if (process.env.FLEETPRUNE_TEST_DATABASE_URL) return process.env.FLEETPRUNE_TEST_DATABASE_URL;
  if (answered) return answered;
  if (!(await tcpReachable(PG_HOST, PG_PORT))) return null;
  for (const user of ['postgres', 'root']) {
    const url = `postgres://${user}@${PG_HOST}:${PG_PORT}/test`;
    // Its port answered: a connection that takes a while is a loaded machine (the whole suite at
    // once), not a missing PostgreSQL; 2 s once failed a test under CI that way.
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 15_000 });
    try {
      await client.connect();
      await client.end();
      answered = url;
      return url;
    } catch {
      await client.end().catch(() => {});
    }
  }
  return null;
}

/**
 * A fresh, empty store location for one test: a temp directory for SQLite, or a uniquely named
 * PostgreSQL schema dropped after the test (so parallel runs never collide). Returns null
 * (after skipping, or failing under CI) when PostgreSQL is not there.
 */
export async function freshStoreLocation(t: TestContext, engine: StoreEngineName, dataDir?: string): Promise<StoreLocation | null> {
  if (engine === 'sqlite') {
    const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'fleetprune-store-')));
    if (!dataDir) deferCleanup(t, () => rm(dir, { recursive: true, force: true, maxRetries: 3 }));
    return { engine: 'sqlite', dataDir: dir };
  }
  const url = await postgresUrl();
  if (!url) {
    engineMissing(t, 'PostgreSQL', `nothing answers on ${PG_HOST}:${PG_PORT} as postgres or root with database test`);
    return null;
  }
  const schema = `fp_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  deferCleanup(t, async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await client.end();
    }
  });
  return { engine: 'postgres', databaseUrl: url, schema };
}

/** Runs `work` on a fresh store of `engine`, closed afterwards; nothing when the engine is missing (skipped, or a failure under CI). */
export async function withFreshStore(t: TestContext, engine: StoreEngineName, work: (store: Store) => Promise<void>): Promise<void> {
  const location = await freshStoreLocation(t, engine);
  if (!location) return;
  const store = await openStore(location);
  try {
    await work(store);
  } finally {
    await store.close();
  }
}
