import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStore } from '../../server/store/open-store.ts';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { runMigrations } from '../../server/store/migrations/run-migrations.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { freshStoreLocation, STORE_ENGINES } from './helpers/store-engines.ts';

for (const engine of STORE_ENGINES) {
  test(`${engine}: a version status reason quoting a backend's NUL is stored (the store refused a NUL in text, and the rollout's action failed at every retry)`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    const repository = new VersionStatusRepository(store.engine);
    const change = { commandId: 'cmd-1', model: 'wine', version: '2', status: 'failed' as const, reason: 'prometheus: bad\u0000data', at: '2026-01-01T00:00:00.000Z' };
    assert.equal(await repository.record(change), true);
    assert.equal((await repository.current('wine', '2'))?.reason, 'prometheus: bad\uFFFDdata');
  });

  test(`${engine}: the next status change of a version is dated after its newest one, even within the same millisecond`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    const repository = new VersionStatusRepository(store.engine);
    await repository.record({ commandId: 'ro-b-a9', model: 'wine', version: '2', status: 'superseded', reason: 'superseded by wine@3', at: '2026-01-01T00:00:00.000Z' });
    // A rollback's restore of production is never outranked by a `superseded` of the same instant.
    assert.equal(await repository.nextAt('wine', '2', '2026-01-01T00:00:00.000Z'), '2026-01-01T00:00:00.001Z');
    assert.equal(await repository.nextAt('wine', '2', '2025-12-31T23:59:59.000Z'), '2026-01-01T00:00:00.001Z', 'a clock stepped back');
    assert.equal(await repository.nextAt('wine', '2', '2026-01-01T00:00:05.000Z'), '2026-01-01T00:00:05.000Z');
    assert.equal(await repository.nextAt('wine', '3', '2026-01-01T00:00:00.000Z'), '2026-01-01T00:00:00.000Z', 'no change yet');
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: the migration to superseded marks a version left production by a later promotion superseded`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    for (const [model, version] of [['wine', '1'], ['wine', '2'], ['beer', '1']] as const) await registerVersion(store, model, version);
    // What the code before `superseded` left behind: wine@1 and wine@2 both production, the alias on wine@2.
    const repository = new VersionStatusRepository(store.engine);
    const production = (commandId: string, model: string, version: string, at: string) => repository.record({ commandId, model, version, status: 'production', reason: 'promoted', at });
    await production('ro-a-a9', 'wine', '1', '2026-01-01T00:00:00.000Z');
    await production('ro-b-a9', 'wine', '2', '2026-02-01T00:00:00.000Z');
    await store.models.setAlias({ model: 'wine', alias: 'production', version: '2', updatedAt: '2026-02-01T00:00:00.000Z', updatedBy: 'rollout-controller' });
    // A model whose production alias was cleared: nothing says what replaced beer@1, it is left.
    await production('ro-c-a9', 'beer', '1', '2026-01-01T00:00:00.000Z');
    await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'rollouts' AND version = 3");

    assert.deepEqual((await runMigrations(store.engine, ALL_MIGRATIONS)).map((m) => `${m.domain}:${m.version}`), ['rollouts:3']);
    const current = async (model: string, version: string) => {
      const found = await repository.current(model, version);
      return found && [found.status, found.reason, found.at];
    };
    assert.deepEqual(await current('wine', '1'), ['superseded', 'superseded by wine@2', '2026-02-01T00:00:00.000Z']);
    assert.deepEqual(await current('wine', '2'), ['production', 'promoted', '2026-02-01T00:00:00.000Z']);
    assert.deepEqual(await current('beer', '1'), ['production', 'promoted', '2026-01-01T00:00:00.000Z']);
    assert.deepEqual(await repository.productionVersions('wine'), ['2']);
  });
}

for (const engine of STORE_ENGINES) {
  test(`${engine}: the migration to withdrawn marks a version left production by a cleared production alias withdrawn, and no other`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    for (const [model, version] of [['wine', '1'], ['beer', '1'], ['beer', '2'], ['mead', '1']] as const) await registerVersion(store, model, version);
    // What the code before `withdrawn` left behind: beer@2 production with no alias; wine@1 holds the alias.
    const repository = new VersionStatusRepository(store.engine);
    const record = (commandId: string, model: string, version: string, status: 'production' | 'superseded' | 'rolled-back', at: string) => repository.record({ commandId, model, version, status, reason: status, at });
    await record('ro-a-a9', 'wine', '1', 'production', '2026-01-01T00:00:00.000Z');
    await store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: '2026-01-01T00:00:00.000Z', updatedBy: 'rollout-controller' });
    await record('ro-b-a9', 'beer', '1', 'production', '2026-01-01T00:00:00.000Z');
    await record('ro-c-a9', 'beer', '2', 'production', '2026-02-01T00:00:00.999Z');
    await record('ro-c-a9:supersedes:1', 'beer', '1', 'superseded', '2026-02-01T00:00:00.999Z');
    await record('ro-d-a9', 'mead', '1', 'rolled-back', '2026-01-01T00:00:00.000Z');
    await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'rollouts' AND version = 4");

    assert.deepEqual((await runMigrations(store.engine, ALL_MIGRATIONS)).map((m) => `${m.domain}:${m.version}`), ['rollouts:4']);
    const current = async (model: string, version: string) => {
      const found = await repository.current(model, version);
      return found && [found.status, found.reason, found.at];
    };
    assert.deepEqual(await current('beer', '2'), ['withdrawn', 'no version holds the production alias (found by the migration to withdrawn)', '2026-02-01T00:00:01.000Z']);
    assert.deepEqual(await current('beer', '1'), ['superseded', 'superseded', '2026-02-01T00:00:00.999Z']);
    assert.deepEqual(await current('wine', '1'), ['production', 'production', '2026-01-01T00:00:00.000Z']);
    assert.deepEqual(await current('mead', '1'), ['rolled-back', 'rolled-back', '2026-01-01T00:00:00.000Z']);
    assert.deepEqual([await repository.productionVersions('beer'), await repository.productionVersions('wine')], [[], ['1']]);
  });

  test(`${engine}: the migration to superseded outranks a production status dated at or after the alias's last move (two servers' clocks apart, one millisecond)`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    for (const [model, version] of [['wine', '1'], ['wine', '2'], ['beer', '1'], ['beer', '2']] as const) await registerVersion(store, model, version);
    const repository = new VersionStatusRepository(store.engine);
    const production = (commandId: string, model: string, version: string, at: string) => repository.record({ commandId, model, version, status: 'production', reason: 'promoted', at });
    // wine@1 promoted by a server whose clock ran ahead; the alias then moved to wine@2 by one whose clock did not.
    await production('ro-a-a9', 'wine', '1', '2026-03-01T00:00:00.000Z');
    await production('ro-b-a9', 'wine', '2', '2026-02-01T00:00:00.000Z');
    await store.models.setAlias({ model: 'wine', alias: 'production', version: '2', updatedAt: '2026-02-01T00:00:00.000Z', updatedBy: 'rollout-controller' });
    // beer@1's production and the alias's move to beer@2 in the same millisecond.
    await production('ro-c-a9', 'beer', '1', '2026-01-01T00:00:00.999Z');
    await production('ro-d-a9', 'beer', '2', '2026-01-01T00:00:00.999Z');
    await store.models.setAlias({ model: 'beer', alias: 'production', version: '2', updatedAt: '2026-01-01T00:00:00.999Z', updatedBy: 'rollout-controller' });
    await store.engine.run("DELETE FROM schema_migrations WHERE domain = 'rollouts' AND version = 3");

    await runMigrations(store.engine, ALL_MIGRATIONS);
    const current = async (model: string, version: string) => {
      const found = await repository.current(model, version);
      return found && [found.status, found.reason, found.at];
    };
    assert.deepEqual(await current('wine', '1'), ['superseded', 'superseded by wine@2', '2026-03-01T00:00:00.001Z']);
    assert.deepEqual(await repository.productionVersions('wine'), ['2']);
    assert.deepEqual(await current('beer', '1'), ['superseded', 'superseded by beer@2', '2026-01-01T00:00:01.000Z']);
    assert.deepEqual(await repository.productionVersions('beer'), ['2']);
  });
}
