import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { runMigrations } from '../../server/store/migrations/run-migrations.ts';
import { DeviceReportsRepository } from '../../server/store/repositories/device-reports-repository.ts';
import { UniqueViolation } from '../../server/store/sql-engine.ts';
import type { Store } from '../../server/store/store.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { STORE_ENGINES, withFreshStore } from './helpers/store-engines.ts';

const manifest = { name: 'm', lineage: { parentSha256: null } } as unknown as Manifest;

function newVersion(model: string, version: string, seq: number, artifactId: string, parent: string | null = null) {
  return {
    model,
    version,
    seq,
    artifactId,
    manifest,
    parentArtifactId: parent,
    epsilon: parent ? 0.1 : null,
    dataFingerprint: 'fp',
    metrics: { test: { accuracy: 0.9 } },
    createdAt: '2025-01-01T00:00:00.000Z',
    createdBy: 'tester',
  };
}

for (const engine of STORE_ENGINES) {
  describe(`store on ${engine}`, () => {
    const withStore = (t: TestContext, work: (store: Store) => Promise<void>) => withFreshStore(t, engine, work);

    test('migrations apply once and are recorded per domain', async (t) => {
      await withStore(t, async (store) => {
        assert.deepEqual(await runMigrations(store.engine, ALL_MIGRATIONS), []);
        const rows = await store.engine.all('SELECT domain, version FROM schema_migrations ORDER BY domain, version');
        assert.deepEqual(
          rows.map((row) => `${row.domain}:${row.version}`),
          ['audit:1', 'audit:2', 'auth:1', 'auth:2', 'fleet:1', 'fleet:2', 'fleet:3', 'fleet:4', 'fleet:5', 'fleet:6', 'fleet:7', 'fleet:8', 'fleet:9', 'fleet:10', 'fleet:11', 'fleet:12', 'fleet:13', 'fleet:14', 'fleet:15', 'jobs:1', 'jobs:2', 'jobs:3', 'jobs:4', 'registry:1', 'registry:2', 'rollouts:1', 'rollouts:2', 'rollouts:3', 'rollouts:4'],
        );
        // A device's answer to an assignment is found by index, not by walking its report history.
        const plan =
          engine === 'sqlite'
            ? await store.engine.all("EXPLAIN QUERY PLAN SELECT payload FROM device_reports WHERE kind = 'assignment' AND assignment_id = 'a' AND device_id = 'd' ORDER BY created_at, id LIMIT 1")
            : await store.engine.all("SELECT indexdef AS detail FROM pg_indexes WHERE indexname = 'device_reports_answer' AND schemaname = current_schema()");
        assert.match(plan.map((row) => String(row.detail)).join('\n'), /device_reports_answer.*\(?assignment_id[=?, ]+.*device_id/);
        // A device's download token finds its device by index (every download with it asks), not by a scan.
        const holder =
          engine === 'sqlite'
            ? await store.engine.all("EXPLAIN QUERY PLAN SELECT id FROM devices WHERE token_id = 't'")
            : await store.engine.all("SELECT indexdef AS detail FROM pg_indexes WHERE indexname = 'devices_token' AND schemaname = current_schema()");
        assert.match(holder.map((row) => String(row.detail)).join('\n'), /devices_token.*token_id/);
      });
    });

    test('fleet:6 keys the reports stored before it by device: a device re-sending one is still a repeat, another device may use its id', async (t) => {
      await withStore(t, async (store) => {
        // The database as fleet:5 left it: one report, keyed by its bare id.
        await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'fleet' AND version = 6");
        const report = { schema: 1, id: 'r-1', kind: 'assignment', deviceId: 'osaka-1', createdAt: '2026-03-01T09:00:00.000Z', assignmentId: 'a-1', outcome: 'installed', role: 'candidate', model: 'iris', version: '2', sha256: 'b'.repeat(64), reason: null } as const;
        await store.engine.run(
          "INSERT INTO device_reports (id, device_id, kind, model, assignment_id, cohort, created_at, received_at, payload) VALUES ('r-1', 'osaka-1', 'assignment', 'iris', 'a-1', 'none', ?, ?, ?)",
          [report.createdAt, report.createdAt, JSON.stringify(report)],
        );
        assert.deepEqual((await runMigrations(store.engine, ALL_MIGRATIONS)).map((m) => `${m.domain}:${m.version}`), ['fleet:6']);
        const reports = new DeviceReportsRepository(store.engine);
        assert.equal(await reports.insert(report, 'none', report.createdAt), false, 'the same device, the same id: a repeat');
        assert.equal(await reports.insert({ ...report, deviceId: 'kyoto-1' }, 'none', report.createdAt), true, 'another device, its own report');
        assert.equal((await reports.findAnswer('a-1', 'osaka-1'))?.id, 'r-1', 'the payload keeps the device\'s id');
      });
    });

    test('fleet:7 marks the fleet commands stored before it that their device answered (from the reports), and only those', async (t) => {
      await withStore(t, async (store) => {
        // The database as fleet:6 left it: two commands to osaka-1, one answered.
        await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'fleet' AND version = 7");
        await store.engine.run('ALTER TABLE fleet_commands DROP COLUMN answered_at');
        await store.engine.run("INSERT INTO devices (id, labels, secret_hash, token_id, enrolled_at, enrolled_by) VALUES ('osaka-1', '{}', 'x', 't', 'now', 'test')");
        for (const id of ['c-answered', 'c-silent']) {
          await store.engine.run("INSERT INTO fleet_commands (id, device_id, command, issued_at, issued_by) VALUES (?, 'osaka-1', 'drop-candidate', '2026-03-01T09:00:00.000Z', 'test')", [id]);
        }
        await store.engine.run(
          "INSERT INTO device_reports (id, device_id, kind, model, assignment_id, cohort, created_at, received_at, payload) VALUES ('osaka-1/r-1', 'osaka-1', 'assignment', 'iris', 'c-answered', 'none', ?, ?, '{}')",
          ['2026-03-01T09:00:01.000Z', '2026-03-01T09:00:02.000Z'],
        );
        assert.deepEqual((await runMigrations(store.engine, ALL_MIGRATIONS)).map((m) => `${m.domain}:${m.version}`), ['fleet:7']);
        assert.deepEqual(await store.engine.all('SELECT id, answered_at FROM fleet_commands ORDER BY id'), [
          { id: 'c-answered', answered_at: '2026-03-01T09:00:02.000Z' },
          { id: 'c-silent', answered_at: null },
        ]);
      });
    });

    test('versions, lineage and aliases round-trip', async (t) => {
      await withStore(t, async (store) => {
        await store.models.ensureModel('iris', '2025-01-01T00:00:00.000Z', 'tester');
        await store.models.insertVersion(newVersion('iris', '1', 1, 'a'.repeat(64)));
        await store.models.insertVersion(newVersion('iris', '2', 2, 'b'.repeat(64), 'a'.repeat(64)));
        await store.models.setAlias({ model: 'iris', alias: 'production', version: '2', updatedAt: 'now', updatedBy: 'tester' });
        const [model] = await store.models.listModels();
        assert.deepEqual({ name: model!.name, count: model!.versionCount, latest: model!.latestVersion }, { name: 'iris', count: 2, latest: '2' });
        const second = await store.models.getVersion('iris', '2');
        assert.deepEqual(second!.parent, { model: 'iris', version: '1' });
        assert.equal(second!.epsilon, 0.1);
        assert.deepEqual(second!.aliases, ['production']);
        assert.deepEqual(second!.metrics, { test: { accuracy: 0.9 } });
        assert.equal((await store.models.listVersions('iris', { afterSeq: 1 })).length, 1);
        assert.equal(await store.models.countVersions(), 2);
      });
    });

    test('a duplicate version is a UniqueViolation', async (t) => {
      await withStore(t, async (store) => {
        await store.models.ensureModel('iris', 'now', 'tester');
        await store.models.insertVersion(newVersion('iris', '1', 1, 'a'.repeat(64)));
        await assert.rejects(store.models.insertVersion(newVersion('iris', '1', 2, 'b'.repeat(64))), UniqueViolation);
      });
    });

    test('a NUL character in text is a UserError on every engine, never a raw driver error', async (t) => {
      await withStore(t, async (store) => {
        const query = store.engine.all('SELECT id FROM devices WHERE id = ?', ['a\u0000b']);
        // SQLite compares it like any other character; PostgreSQL refuses it (22021), which the engine maps.
        if (engine === 'sqlite') assert.deepEqual(await query, []);
        else await assert.rejects(query, (error: Error) => error.name === 'UserError' && /NUL character/.test(error.message));
      });
    });

    test('a failed transaction leaves nothing behind', async (t) => {
      await withStore(t, async (store) => {
        await assert.rejects(
          store.transaction(async (tx) => {
            await tx.models.ensureModel('iris', 'now', 'tester');
            await tx.audit.append({ at: 'now', actor: 'tester', action: 'x', target: 'y', details: {} });
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.equal(await store.models.countModels(), 0);
        assert.equal(await store.audit.count(), 0);
      });
    });

    test('tokens are found by hash until revoked', async (t) => {
      await withStore(t, async (store) => {
        await store.tokens.insert({ id: 't1', tokenHash: 'h1', role: 'viewer', label: 'l', createdAt: 'now', createdBy: 'x', revokedAt: null, expiresAt: null });
        assert.equal((await store.tokens.findByHash('h1'))?.role, 'viewer');
        assert.equal(await store.tokens.revoke('t1', 'later'), true);
        assert.equal(await store.tokens.findByHash('h1'), undefined);
      });
    });

    test('audit entries list newest first with paging', async (t) => {
      await withStore(t, async (store) => {
        for (let i = 0; i < 5; i++) await store.audit.append({ at: `t${i}`, actor: 'a', action: `act${i}`, target: 'x', details: { i } });
        const page = await store.audit.list({ limit: 2 });
        assert.deepEqual(page.map((e) => e.action), ['act4', 'act3']);
        const next = await store.audit.list({ beforeId: page[1]!.id, limit: 10 });
        assert.deepEqual(next.map((e) => e.details.i), [2, 1, 0]);
      });
    });

    test('unfinished jobs of this node (or of no node) are failed with a reason; other nodes\' are left alone', async (t) => {
      await withStore(t, async (store) => {
        const base = { kind: 'prune', request: {}, progress: null, result: null, error: null, createdAt: 'now', updatedAt: 'now', createdBy: 'x', node: 'node-a' };
        await store.jobs.insert({ ...base, id: 'j1', state: 'running' });
        await store.jobs.insert({ ...base, id: 'j2', state: 'succeeded' });
        await store.jobs.insert({ ...base, id: 'j3', state: 'queued', node: 'node-b' });
        await store.jobs.insert({ ...base, id: 'j4', state: 'queued', node: null });
        assert.deepEqual((await store.jobs.failUnfinished('server restarted', 'later', 'node-a')).sort(), ['j1', 'j4']);
        const job = await store.jobs.get('j1');
        assert.equal(job?.state, 'failed');
        assert.equal(job?.error, 'server restarted');
        assert.equal(job?.node, 'node-a');
        assert.equal((await store.jobs.get('j2'))?.state, 'succeeded');
        assert.equal((await store.jobs.get('j3'))?.state, 'queued', 'another server\'s job');
      });
    });

    // Each transaction stays open a moment after its write, so all six have looked before the first
    // commits: on PostgreSQL (READ COMMITTED) a look-then-insert saw no row in every one of them.
    const holdOpen = () => new Promise((resolve) => setTimeout(resolve, 100));

    test('six transactions creating one new model at once all succeed, and create it once', async (t) => {
      await withStore(t, async (store) => {
        await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            store.transaction(async (tx) => {
              await tx.models.ensureModel('iris', `t${i}`, `tester${i}`);
              await holdOpen();
            }),
          ),
        );
        assert.deepEqual((await store.models.listModels()).map((model) => model.name), ['iris']);
      });
    });

    test('six transactions setting one new alias at once all succeed; one alias row, on one of the versions set', async (t) => {
      await withStore(t, async (store) => {
        await store.models.ensureModel('iris', 'now', 'tester');
        for (let seq = 1; seq <= 6; seq++) await store.models.insertVersion(newVersion('iris', String(seq), seq, String(seq).padStart(64, '0')));
        const set: string[] = [];
        await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            store.transaction(async (tx) => {
              await tx.models.setAlias({ model: 'iris', alias: 'candidate', version: String(i + 1), updatedAt: 'now', updatedBy: 'tester' });
              await holdOpen();
              set.push(String(i + 1));
            }),
          ),
        );
        const holders = (await store.models.listVersions('iris')).filter((version) => version.aliases.includes('candidate'));
        assert.equal(holders.length, 1);
        assert.ok(set.includes(holders[0]!.version));
      });
    });

    test('a page after a seq beyond what the column holds is empty on every engine (PostgreSQL\'s INTEGER refused it)', async (t) => {
      await withStore(t, async (store) => {
        await store.models.ensureModel('iris', 'now', 'tester');
        await store.models.insertVersion(newVersion('iris', '1', 1, 'a'.repeat(64)));
        for (const afterSeq of [2_147_483_647, 2_147_483_648, 3_000_000_000, Number.MAX_SAFE_INTEGER]) {
          assert.deepEqual(await store.models.listVersions('iris', { afterSeq }), [], String(afterSeq));
        }
        assert.equal((await store.models.listVersions('iris', { afterSeq: 0 })).length, 1);
      });
    });

    test('concurrent transactions do not interleave', async (t) => {
      await withStore(t, async (store) => {
        await store.models.ensureModel('iris', 'now', 'tester');
        await Promise.all(
          Array.from({ length: 8 }, () =>
            store.transaction(async (tx) => {
              const seq = (await tx.models.maxSeq('iris')) + 1;
              await tx.models.insertVersion(newVersion('iris', String(seq), seq, String(seq).padStart(64, '0')));
            }).catch((error) => {
              // PostgreSQL's READ COMMITTED may let two transactions read the same max; the
              // unique constraint refuses the loser, which is what the registry maps to 409.
              if (!(error instanceof UniqueViolation)) throw error;
            }),
          ),
        );
        const versions = await store.models.listVersions('iris');
        assert.deepEqual(versions.map((v) => v.seq), versions.map((_, i) => i + 1));
      });
    });
  });
}
