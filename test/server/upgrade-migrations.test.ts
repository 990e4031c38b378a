import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { runMigrations } from '../../server/store/migrations/run-migrations.ts';
import { PostgresEngine } from '../../server/store/postgres-engine.ts';
import { LOCK_CLASS, LOCK_KEY_SQL } from '../../server/rollout/leader-election.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { freshStoreLocation } from './helpers/store-engines.ts';
import { startTestServer } from './helpers/test-server.ts';
import { runCli } from '../helpers/cli.ts';
import { FLEETPRUNE_VERSION } from '../../shared/cli/version.ts';

/** The database as an older fleetprune left it: every migration but the newest. */
const OLDER = ALL_MIGRATIONS.slice(0, -1);
const NEWEST = ALL_MIGRATIONS.at(-1)!;

test('PostgreSQL: an upgrade refuses to migrate the database while another server leads on it, changing nothing, and says which migrations it applied once that server is stopped', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return;
  const engine = await PostgresEngine.connect({ connectionString: location.databaseUrl, schema: location.schema });
  const applied = async () => (await engine.all('SELECT domain, version FROM schema_migrations')).map((row) => `${row.domain}:${row.version}`);
  t.after(() => engine.close());
  await runMigrations(engine, OLDER);
  const before = await applied();

  // An older server leading on it: the schema's leader lock, held by a session named as servers name theirs.
  const holder = new pg.Client({ connectionString: location.databaseUrl, application_name: 'fleetprune-rollout-leader old-node:41:abcdef', options: `-c search_path=${location.schema}` });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query(`SELECT pg_advisory_lock($1, ${LOCK_KEY_SQL})`, [LOCK_CLASS]);
  const config = { databaseUrl: location.databaseUrl, databaseSchema: location.schema };
  await assert.rejects(
    startTestServer(t, { engine: 'postgres', config }),
    (error: Error) => {
      assert.equal(
        error.message,
        `another fleetprune server (old-node:41:abcdef) runs on this database as the rollout leader, and this version would migrate the database under it (${NEWEST.domain}:${NEWEST.version}); ` +
          'stop every fleetprune server on the database first, then start this version (docs/deployment.md, "Upgrading")',
      );
      assert.equal(error.name, 'UserError');
      return true;
    },
  );
  assert.deepEqual(await applied(), before, 'nothing migrated');

  // Stopped: the upgrade goes ahead and says what it applied.
  await holder.query('SELECT pg_advisory_unlock_all()');
  const { logger, lines } = recordingLogger();
  await startTestServer(t, { engine: 'postgres', config, start: { log: logger } });
  assert.equal((await applied()).length, ALL_MIGRATIONS.length);
  assert.deepEqual(
    lines.filter((line) => String(line.msg).startsWith('migrated the database')).map((line) => line.msg),
    [`migrated the database: applied ${NEWEST.domain}:${NEWEST.version} (${NEWEST.name})`],
  );
});

test('a new database is set up in one line; a database a newer fleetprune migrated is refused, naming its migrations in order', async (t) => {
  const { logger, lines } = recordingLogger();
  const server = await startTestServer(t, { start: { log: logger } });
  if (!server) return;
  assert.deepEqual(lines.filter((line) => /database/.test(String(line.msg))).map((line) => [line.msg, line.migrations]), [['set up a new database', ALL_MIGRATIONS.length]]);
  // Migrations this version does not know, as a newer one would have left them: numbers in numeric order (9 before 10).
  const engine = server.server.ctx.store.engine;
  for (const version of [10, 9]) await engine.run("INSERT INTO schema_migrations (domain, version, name, applied_at) VALUES ('future', ?, 'later', '2030-01-01T00:00:00.000Z')", [version]);
  await assert.rejects(runMigrations(engine, ALL_MIGRATIONS), /has migrations future:9, future:10 that this version does not know; it knows audit:\d+ auth:\d+ fleet:\d+ jobs:\d+ registry:\d+ rollouts:\d+\); run a version that knows them/);
});

test('fleetprune --version names the newest migration of each part of the database schema it knows: every build says 0.1.0, and the refusal of a newer database names migrations', async () => {
  const newest = new Map<string, number>();
  for (const { domain, version } of ALL_MIGRATIONS) newest.set(domain, Math.max(version, newest.get(domain) ?? 0));
  const expected = [...newest].sort(([a], [b]) => a.localeCompare(b)).map(([domain, version]) => `${domain}:${version}`).join(' ');
  assert.match(expected, /^audit:\d+ auth:\d+ fleet:\d+ jobs:\d+ registry:\d+ rollouts:\d+$/);
  const shown = await runCli(['--version'], {}, { ownProcess: true });
  assert.deepEqual(shown, { code: 0, stdout: `${FLEETPRUNE_VERSION} (database migrations: ${expected})\n`, stderr: '' });
});
