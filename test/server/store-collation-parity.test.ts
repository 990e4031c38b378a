import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { engineMissing } from '../helpers/engines.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { freshStoreLocation, postgresUrl, STORE_ENGINES, type StoreEngineName } from './helpers/store-engines.ts';
import { startTestServer, type TestServer } from './helpers/test-server.ts';
import { DeviceReportsRepository } from '../../server/store/repositories/device-reports-repository.ts';
import type { Report } from '../../shared/protocol/payloads.ts';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { runMigrations } from '../../server/store/migrations/run-migrations.ts';
import { SqliteEngine } from '../../server/store/sqlite-engine.ts';
import { PostgresEngine } from '../../server/store/postgres-engine.ts';
import { createStore } from '../../server/store/store.ts';
import { SQLITE_FILE } from '../../server/store/open-store.ts';
import { join } from 'node:path';
import type { SqlEngine } from '../../server/store/sql-engine.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';

/**
 * Names that sort differently by code point (SQLite's TEXT order) and by a language's collation
 * (PostgreSQL's, when its database is created with one: en_US.UTF-8 or ICU are common defaults).
 */
const NAMES = ['apple', 'Banana', 'cherry', 'a-2', 'a1', 'B1', '_x'];
const CODE_POINT_ORDER = [...NAMES].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * PostgreSQL runs these tests in a throwaway database whose default collation is ICU English (not
 * the C.UTF-8 of the test database), dropped at the end: the server's schemas go there through
 * FLEETPRUNE_TEST_DATABASE_URL, which freshStoreLocation reads.
 */
let languageDatabase: Promise<{ admin: string; name: string } | null> | undefined;

async function useLanguageCollatedDatabase(t: TestContext): Promise<boolean> {
  languageDatabase ??= (async () => {
    const base = await postgresUrl();
    if (!base) return null;
    const name = `fp_collation_${process.pid}_${randomBytes(4).toString('hex')}`;
    const client = new pg.Client({ connectionString: base });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'`);
    } finally {
      await client.end();
    }
    const url = new URL(base);
    url.pathname = `/${name}`;
    process.env.FLEETPRUNE_TEST_DATABASE_URL = url.toString();
    return { admin: base, name };
  })();
  const created = await languageDatabase;
  if (!created) engineMissing(t, 'PostgreSQL', 'nothing answers on the test PostgreSQL address');
  return created !== null;
}

after(async () => {
  const created = await languageDatabase;
  if (!created) return;
  delete process.env.FLEETPRUNE_TEST_DATABASE_URL;
  const client = new pg.Client({ connectionString: created.admin });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${created.name} WITH (FORCE)`);
  } finally {
    await client.end();
  }
});

async function server(t: TestContext, engine: StoreEngineName, config = {}): Promise<TestServer | null> {
  if (engine === 'postgres' && !(await useLanguageCollatedDatabase(t))) return null;
  return startTestServer(t, { engine, config });
}

for (const engine of STORE_ENGINES) {
  describe(`name order on ${engine} (a PostgreSQL database with a language's collation)`, () => {
    test('models are listed in code point order, as on SQLite', async (t) => {
      const signer = await makeSigner(t);
      const env = await server(t, engine, { trustedKeys: [signer.publicKeyPath] });
      if (!env) return;
      const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey });
      for (const name of NAMES) {
        // A model's manifests name it (the registry refuses any other): the same files, signed under each name.
        const response = await pushArtifact(env, name, artifact.dir, signManifest({ ...artifact.manifest, name }, signer.privateKey));
        assert.equal(response.status, 201, await response.text());
      }
      const listed = (await (await env.request('GET', '/api/models')).json()) as { models: { name: string }[] };
      assert.deepEqual(
        listed.models.map((model) => model.name),
        CODE_POINT_ORDER,
      );
    });

    test('devices are listed and paged in code point order, as on SQLite: every device once', async (t) => {
      const env = await server(t, engine);
      if (!env) return;
      const ids = NAMES.filter((name) => /^[A-Za-z0-9]/.test(name));
      for (const id of ids) {
        const response = await env.request('POST', '/api/devices', { json: { id, labels: { site: 'x' } } });
        assert.equal(response.status, 201, await response.text());
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const query: string = cursor === null ? "" : `&after=${encodeURIComponent(cursor)}`;
        const page = (await (await env.request('GET', `/api/devices?limit=2${query}`)).json()) as { devices: { id: string }[]; next: string | null };
        seen.push(...page.devices.map((device) => device.id));
        cursor = page.next;
      } while (cursor !== null);
      assert.deepEqual(seen, CODE_POINT_ORDER.filter((name) => ids.includes(name)));
    });
  
    test('a database from before keeps its models, versions, aliases and devices through the migration, and lists them in code point order', async (t) => {
      if (engine === 'postgres' && !(await useLanguageCollatedDatabase(t))) return;
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const connect = async (): Promise<SqlEngine> =>
        location.engine === 'sqlite'
          ? new SqliteEngine(join(location.dataDir, SQLITE_FILE))
          : PostgresEngine.connect({ connectionString: location.databaseUrl, schema: location.schema });
      const older = ALL_MIGRATIONS.filter((migration) => !(migration.domain === 'registry' && migration.version >= 2) && !(migration.domain === 'fleet' && migration.version >= 8));
      const at = '2025-01-01T00:00:00.000Z';
      let engineBefore = await connect();
      try {
        await runMigrations(engineBefore, older);
        const store = createStore(engineBefore);
        for (const [index, name] of NAMES.entries()) {
          await store.models.ensureModel(name, at, 'tester');
          const manifest = { lineage: { parentSha256: null, epsilon: null, dataFingerprint: 'd' }, metrics: { test: { accuracy: 0.5 } }, files: {} } as unknown as Manifest;
          await store.models.insertVersion({ model: name, version: '1', seq: 1, artifactId: `artifact-${index}`, manifest, parentArtifactId: null, epsilon: null, dataFingerprint: 'd', metrics: manifest.metrics, createdAt: at, createdBy: 'tester' });
          await store.models.setAlias({ model: name, alias: 'production', version: '1', updatedAt: at, updatedBy: 'tester' });
          await engineBefore.run("INSERT INTO devices (id, labels, secret_hash, token_id, enrolled_at, enrolled_by) VALUES (?, '{}', 'h', 't', ?, 'tester')", [name, at]);
          await engineBefore.run("INSERT INTO device_assignments (id, device_id, model, version, artifact_id, role, issued_at, issued_by, state, updated_at) VALUES ('a', ?, ?, '1', 'x', 'active', ?, 'tester', 'published', ?)", [name, name, at, at]);
        }
      } finally {
        await engineBefore.close();
      }
      engineBefore = await connect();
      try {
        const applied = await runMigrations(engineBefore, ALL_MIGRATIONS);
        assert.deepEqual(applied.map((migration) => `${migration.domain}:${migration.version}`), ['registry:2', 'fleet:8', 'fleet:9', 'fleet:10', 'fleet:11', 'fleet:12', 'fleet:13', 'fleet:14', 'fleet:15']);
        const store = createStore(engineBefore);
        assert.deepEqual((await store.models.listModels()).map((model) => model.name), CODE_POINT_ORDER);
        for (const name of NAMES) assert.deepEqual((await store.models.getVersion(name, '1'))?.aliases, ['production']);
        const devices = await engineBefore.all('SELECT id FROM devices ORDER BY id');
        assert.deepEqual(devices.map((row) => String(row.id)), CODE_POINT_ORDER);
        assert.equal(Number((await engineBefore.get('SELECT COUNT(*) AS n FROM device_assignments'))?.n), NAMES.length);
      } finally {
        await engineBefore.close();
      }
    });
  
    test("a device's first answer among two of the same millisecond is the same on every engine (the lower id by code point)", async (t) => {
      const env = await server(t, engine);
      if (!env) return;
      const { store } = env.server.ctx;
      assert.equal((await env.request('POST', '/api/devices', { json: { id: 'dev-1', labels: { site: 'x' } } })).status, 201);
      const reports = new DeviceReportsRepository(store.engine);
      const answer = (id: string, outcome: string) =>
        ({ kind: 'assignment', id, deviceId: 'dev-1', assignmentId: 'assignment-1', model: 'iris', outcome, createdAt: '2025-01-01T00:00:00.000Z' }) as unknown as Report;
      // Stored in the other order than expected: 'answer-Zz' is first by code point, 'answer-aa' by a language's collation.
      assert.equal(await reports.insert(answer('answer-aa', 'refused'), 'cohort', '2025-01-01T00:00:00.000Z'), true);
      assert.equal(await reports.insert(answer('answer-Zz', 'installed'), 'cohort', '2025-01-01T00:00:00.000Z'), true);
      assert.equal(((await reports.findAnswer('assignment-1', 'dev-1')) as unknown as { id: string }).id, 'answer-Zz');
    });
  });
}
