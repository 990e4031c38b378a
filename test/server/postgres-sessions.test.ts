import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { openStore } from '../../server/store/open-store.ts';
import { PostgresEngine, withExplicitSslMode, withoutUrlOptions } from '../../server/store/postgres-engine.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';
import { spawnServer } from './helpers/server-process.ts';
import { engineMissing } from '../helpers/engines.ts';
import { freshStoreLocation, postgresUrl } from './helpers/store-engines.ts';

/** What every PostgreSQL session of a server works with, whatever the URL and the database's own defaults. */

/** A database of its own for one test (dropped after it), as `admin` (the test's superuser) reaches it; null when PostgreSQL is missing. */
async function freshDatabase(t: TestContext): Promise<{ url: string; admin: (sql: string) => Promise<pg.QueryResult> } | null> {
  const base = await postgresUrl();
  if (!base) {
    engineMissing(t, 'PostgreSQL', 'nothing answers on 127.0.0.1:5432 as postgres or root with database test');
    return null;
  }
  const name = `fp_sessions_${process.pid}_${randomBytes(4).toString('hex')}`;
  const run = async (url: string, sql: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await run(base, `CREATE DATABASE ${name}`);
  deferCleanup(t, () => run(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), admin: (sql) => run(url.toString(), sql) };
}

test('a --database-url with its own options keeps them, and the sessions still work in --database-schema', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  const url = `${db.url}?options=${encodeURIComponent('-c statement_timeout=61000')}`;
  for (const schema of ['site_a', 'site_b']) {
    const store = await openStore({ engine: 'postgres', databaseUrl: url, schema });
    try {
      await store.models.ensureModel(`model-of-${schema}`, new Date().toISOString(), 'test');
      assert.deepEqual((await store.models.listModels()).map((model) => model.name), [`model-of-${schema}`], `${schema} has a registry of its own`);
      assert.deepEqual(await store.engine.get('SELECT current_schema() AS schema, current_setting(\'statement_timeout\') AS timeout'), { schema, timeout: '61s' });
    } finally {
      await store.close();
    }
  }
  const tables = await db.admin(`SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'models' ORDER BY 1`);
  assert.deepEqual(tables.rows.map((row) => row.schema), ['site_a', 'site_b'], 'nothing in public');
});

test('a schema named like an SQL keyword works; one created beforehand needs no CREATE right on the database', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  const store = await openStore({ engine: 'postgres', databaseUrl: db.url, schema: 'user' });
  await store.close();
  // A least-privilege role that owns the schema a DBA made for it, and may not create schemas.
  const role = `fp_role_${process.pid}_${randomBytes(4).toString('hex')}`;
  await db.admin(`CREATE ROLE ${role} LOGIN`);
  deferCleanup(t, async () => {
    await db.admin(`DROP SCHEMA IF EXISTS fleet CASCADE`);
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  });
  await db.admin(`CREATE SCHEMA fleet AUTHORIZATION ${role}`);
  const url = new URL(db.url);
  url.username = role;
  const owned = await openStore({ engine: 'postgres', databaseUrl: url.toString(), schema: 'fleet' });
  try {
    assert.equal((await owned.engine.get<{ schema: string }>('SELECT current_schema() AS schema'))?.schema, 'fleet');
  } finally {
    await owned.close();
  }
});

test('a role that may not use a schema made beforehand is told so, not that the URL set another search_path', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  const role = `fp_role_${process.pid}_${randomBytes(4).toString('hex')}`;
  await db.admin(`CREATE ROLE ${role} LOGIN`);
  deferCleanup(t, async () => {
    await db.admin(`DROP SCHEMA IF EXISTS fleet CASCADE`);
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  });
  await db.admin('CREATE SCHEMA fleet');
  const url = new URL(db.url);
  url.username = role;
  await assert.rejects(openStore({ engine: 'postgres', databaseUrl: url.toString(), schema: 'fleet' }), /^UserError: --database-schema fleet: this role cannot use the schema/);
});

test('a role without CREATE on the schema it works in is told what it needs on one line (exit 2), not an internal error; PostgreSQL\'s own schemas are refused up front', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  const role = `fp_role_${process.pid}_${randomBytes(4).toString('hex')}`;
  await db.admin(`CREATE ROLE ${role} LOGIN`);
  // PostgreSQL 15 and later give no one but its owner CREATE on public; said here for older ones.
  await db.admin('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
  deferCleanup(t, () => db.admin(`DROP ROLE IF EXISTS ${role}`));
  const url = new URL(db.url);
  url.username = role;
  await assert.rejects(
    openStore({ engine: 'postgres', databaseUrl: url.toString() }),
    /^UserError: --database-url \(or FLEETPRUNE_DATABASE_URL\): PostgreSQL refused to set up fleetprune's tables: permission denied for schema public \(the database user needs CREATE on the schema it works in \(public, unless the search_path says otherwise\): GRANT CREATE ON SCHEMA … TO that user, or give --database-schema a schema it owns\)$/,
  );
  const dir = await tempDir(t);
  for (const schema of ['pg_catalog', 'information_schema']) {
    const run = await runCli(['server', '--data-dir', dir, '--database-url', db.url, '--database-schema', schema, '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0']);
    assert.deepEqual([run.code, run.stderr], [2, `fleetprune: --database-schema: must not be one of PostgreSQL's own schemas (pg_…, information_schema)\n`], schema);
  }
});

test('a URL whose own search_path names no schema that exists is refused at start on one line (exit 2), not an internal error; once the schema exists it starts', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  const url = new URL(db.url);
  url.searchParams.set('options', '-c search_path=nosuch');
  const dir = await tempDir(t);
  const args = ['server', '--data-dir', dir, '--database-url', url.toString(), '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'];
  const refused = await runCli(args);
  assert.deepEqual([refused.code, refused.stderr], [
    2,
    'fleetprune: --database-url (or FLEETPRUNE_DATABASE_URL): the database\'s sessions have no schema to work in: none of their search_path (nosuch) exists or may be used by this role; ' +
      'create the schema (or fix the search_path in the URL\'s options), or give --database-schema NAME to have one created\n',
  ]);
  assert.equal((await db.admin("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")).rows[0].n, 0, 'nothing made');
  await db.admin('CREATE SCHEMA nosuch');
  const store = await openStore({ engine: 'postgres', databaseUrl: url.toString() });
  try {
    assert.equal((await store.engine.get<{ schema: string }>('SELECT current_schema() AS schema'))?.schema, 'nosuch');
  } finally {
    await store.close();
  }
});

test('transactions run READ COMMITTED on a database whose default is stricter, and with a 30 s idle-in-transaction limit (PostgreSQL ends a session left idle inside one)', async (t) => {
  const db = await freshDatabase(t);
  if (!db) return;
  await db.admin(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} SET default_transaction_isolation = 'repeatable read'`);
  const store = await openStore({ engine: 'postgres', databaseUrl: db.url, schema: 'fleet' });
  try {
    const inside = await store.engine.transaction((tx) => tx.get("SELECT current_setting('transaction_isolation') AS isolation, current_setting('idle_in_transaction_session_timeout') AS idle"));
    assert.deepEqual(inside, { isolation: 'read committed', idle: '30s' });
  } finally {
    await store.close();
  }
});

test('with --database-schema, a server that accepts connections and never answers is refused (after the connect timeout), not waited on for ever', { timeout: 60_000 }, async (t) => {
  const silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const sockets = new Set<Socket>();
  silent.on('connection', (socket) => sockets.add(socket));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const { port } = silent.address() as AddressInfo;
  await assert.rejects(openStore({ engine: 'postgres', databaseUrl: `postgres://postgres@127.0.0.1:${port}/test`, schema: 'fleet' }), /^UserError: --database-url \(or FLEETPRUNE_DATABASE_URL\): cannot connect to PostgreSQL \(.*timeout/);
});

test('a transaction whose start fails after BEGIN took effect (the SET LOCAL refused, as a query cancel would make it) leaves no aborted session in the pool', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return;
  const engine = await PostgresEngine.connect({ connectionString: location.databaseUrl, schema: location.schema, maxConnections: 1 });
  t.after(() => engine.close());
  // The one pooled session's next BEGIN round trip fails in its second statement, once.
  let failNext = true;
  engine.pool.on('acquire', (client: pg.PoolClient) => {
    const query = client.query.bind(client) as (text: string) => Promise<unknown>;
    (client as unknown as { query: (text: string) => Promise<unknown> }).query = (text: string) =>
      query(failNext && text.startsWith('BEGIN') ? ((failNext = false), text.replace(/= \d+$/, "= 'not a duration'")) : text);
  });
  await assert.rejects(engine.transaction((tx) => tx.get('SELECT 1 AS one')), /idle_in_transaction_session_timeout/);
  for (let i = 0; i < 3; i++) assert.deepEqual(await engine.transaction((tx) => tx.get('SELECT 1 AS one')), { one: 1 }, `transaction ${i + 2} runs`);
  // And a client handed back inside a transaction, whatever left it there, is not pooled.
  await engine.withClient((client) => client.query('BEGIN'));
  assert.equal(await engine.withClient(async (client) => client.getTransactionStatus()), 'I');
});

test('withoutUrlOptions: takes the options parameter out of a URL, keeping the rest; leaves other strings alone', () => {
  assert.deepEqual(withoutUrlOptions('postgres://u:p%40ss@db:5432/fleet?sslmode=require&options=-c%20statement_timeout%3D5s'), {
    connectionString: 'postgres://u:p%40ss@db:5432/fleet?sslmode=require',
    urlOptions: '-c statement_timeout=5s',
  });
  assert.deepEqual(withoutUrlOptions('postgres://db/fleet'), { connectionString: 'postgres://db/fleet', urlOptions: '' });
  assert.deepEqual(withoutUrlOptions('/var/run/postgresql fleet'), { connectionString: '/var/run/postgresql fleet', urlOptions: '' });
  // A host given as a parameter (a socket directory): no URL parser takes it, pg does.
  assert.deepEqual(withoutUrlOptions('postgres://fleet@/db?host=/run/postgresql&options=-c%20search_path%3Dx'), { connectionString: 'postgres://fleet@/db?host=%2Frun%2Fpostgresql', urlOptions: '-c search_path=x' });
});

test('withExplicitSslMode: an sslmode the driver takes as verify-full is said as verify-full, with a one-line note; others are left alone', () => {
  assert.deepEqual(withExplicitSslMode('postgres://u@db:5432/fleet?sslmode=require&application_name=x'), {
    connectionString: 'postgres://u@db:5432/fleet?sslmode=verify-full&application_name=x',
    note: "--database-url: sslmode=require is taken as verify-full by the PostgreSQL driver (the server's certificate and host name are checked); say sslmode=verify-full to mean that, or uselibpqcompat=true&sslmode=require for libpq's meaning",
  });
  // The driver reads the last of a parameter given twice: require then disable is no TLS, kept as it is.
  assert.equal(withExplicitSslMode('postgres://db/fleet?sslmode=disable&sslmode=require').connectionString, 'postgres://db/fleet?sslmode=verify-full');
  for (const kept of [
    'postgres://db/fleet',
    'postgres://db/fleet?sslmode=disable',
    'postgres://db/fleet?sslmode=verify-full',
    'postgres://db/fleet?uselibpqcompat=true&sslmode=require',
    'postgres://db/fleet?sslmode=require&sslmode=disable',
    'postgres://db/fleet?uselibpqcompat=false&sslmode=require&uselibpqcompat=true',
    // A socket: URL, whose sslmode the driver does not read.
    'socket:/var/run/postgresql?db=fleet&sslmode=require',
  ]) {
    assert.deepEqual(withExplicitSslMode(kept), { connectionString: kept }, kept);
  }
});

test('a server given sslmode=require prints no driver warning: its stderr is its own lines (a server without SSL refuses it on one line, exit 2)', async (t) => {
  const base = await postgresUrl();
  if (!base) return t.skip('no PostgreSQL');
  const url = new URL(base);
  url.searchParams.set('sslmode', 'require');
  const dir = await tempDir(t);
  const run = await runCli(['server', '--data-dir', dir, '--database-url', url.toString(), '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { FLEETPRUNE_LOG_LEVEL: 'warn' }, { ownProcess: true });
  assert.doesNotMatch(run.stderr, /SECURITY WARNING|\(node:\d+\)/);
  const lines = run.stderr.trimEnd().split('\n');
  assert.ok(lines.slice(0, -1).every((line) => line.startsWith('{')), run.stderr);
  assert.match(lines[0]!, /sslmode=require is taken as verify-full/);
  if (run.code !== 0) {
    assert.equal(run.code, 2, run.stderr);
    assert.match(lines.at(-1)!, /^fleetprune: --database-url \(or FLEETPRUNE_DATABASE_URL\): cannot connect to PostgreSQL/);
  }
});

test('a --database-url without a user logs in as the operating system\'s user, as psql does, though $USER and $PGUSER are empty; a login refused for it hints to put the user in the URL', async (t) => {
  const base = await postgresUrl();
  if (!base) return void engineMissing(t, 'PostgreSQL', 'nothing answers on 127.0.0.1:5432 as postgres or root with database test');
  const url = new URL(base);
  url.username = '';
  url.password = '';
  // pg logs in as $PGUSER, else $USER: both empty, as in a root shell, a container or a service
  // without them. It sent no user name, and PostgreSQL refused; now the OS user's name is taken.
  const noUserEnv = { USER: '', PGUSER: '' };
  const schema = `fp_os_user_${randomBytes(4).toString('hex')}`;
  deferCleanup(t, async () => {
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => admin.end());
  });
  const osUser = userInfo().username;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  const isRole = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [osUser]).finally(() => admin.end())).rowCount === 1;
  if (isRole) {
    const server = await spawnServer(t, await tempDir(t), ['--database-url', url.toString(), '--database-schema', schema], noUserEnv);
    assert.match(server.line, /^listening http=\d+ grpc=\d+/);
  }

  // The OS user is no role of the database (run as nobody, here when root): refused with the hint.
  const args = ['server', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0', '--database-url', url.toString()];
  if (process.getuid?.() === 0) {
    const dataDir = await tempDir(t);
    await chown(dataDir, 65534, 65534);
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, ['bin/fleetprune.js', ...args, '--data-dir', dataDir], { cwd: REPO_ROOT, env: { ...process.env, ...noUserEnv, HOME: '/', FLEETPRUNE_LOG_LEVEL: 'silent' }, timeout: 30_000, uid: 65534, gid: 65534 }, (error, _stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stderr }),
      ),
    );
    const nobody = (await new Promise<string>((resolve) => execFile('id', ['-un', '65534'], (_error, stdout) => resolve(stdout.trim())))) || 'nobody';
    const example = new URL(url);
    example.username = 'USER';
    assert.deepEqual(
      [run.code, run.stderr],
      [2, `fleetprune: --database-url (or FLEETPRUNE_DATABASE_URL): cannot connect to PostgreSQL (role "${nobody}" does not exist); put the user in the URL: ${example.toString()}\n`],
    );
  }
  // Another refusal of a URL without a user says nothing of users.
  const refused = await runCli([...args, '--data-dir', await tempDir(t), '--database-url', 'postgres://127.0.0.1:1/test'], noUserEnv, { timeoutMs: 30_000 });
  assert.deepEqual([refused.code, refused.stderr], [2, 'fleetprune: --database-url (or FLEETPRUNE_DATABASE_URL): cannot connect to PostgreSQL (connect ECONNREFUSED 127.0.0.1:1)\n']);
});
