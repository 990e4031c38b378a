import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { TokenService } from '../../server/auth/token-service.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { RolloutHolds } from '../../server/rollout/rollout-holds.ts';
import { CandidateRetiredError } from '../../server/rollout/rollout-repository.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { openStore, type StoreLocation } from '../../server/store/open-store.ts';
import { ALL_MIGRATIONS } from '../../server/store/migrations/index.ts';
import { DevicesRepository } from '../../server/store/repositories/devices-repository.ts';
import { ModelsRepository } from '../../server/store/repositories/models-repository.ts';
import { TokensRepository } from '../../server/store/repositories/tokens-repository.ts';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import type { Store } from '../../server/store/store.ts';
import { UserError } from '../../shared/util/errors.ts';
import { isOneLineError } from '../helpers/cli.ts';
import { registerVersions } from '../helpers/registered-versions.ts';
import { ReducerHarness, STAGED_STEPS, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { runCli } from './helpers/run-cli.ts';
import { freshStoreLocation, STORE_ENGINES } from './helpers/store-engines.ts';

/*
 * Races between transactions (two servers, or two requests, at once). Each test widens the window
 * it is about by wrapping a repository method, so it fails every time without its fix: on
 * PostgreSQL (READ COMMITTED) each transaction otherwise misses the other's uncommitted change;
 * SQLite serializes transactions, and runs the same tests as a check of the expected outcome.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ADMIN = { tokenId: 'op', role: 'admin' as const, label: 'op' };

/** Replaces `proto[name]` for the rest of the test (restored after it). */
function wrap<T extends object, K extends keyof T>(t: TestContext, proto: T, name: K, make: (original: T[K]) => T[K]): void {
  const original = proto[name];
  proto[name] = make(original);
  t.after(() => {
    proto[name] = original;
  });
}

async function seedVersions(store: Store, model: string, versions: string[]): Promise<void> {
  await registerVersions(store, versions.map((version, index) => ({ model, version, sha256: String(index + 1).repeat(64) })));
}

for (const engine of STORE_ENGINES) {
  describe(`store races on ${engine}`, () => {
    async function open(t: TestContext): Promise<{ store: Store; location: StoreLocation } | null> {
      const location = await freshStoreLocation(t, engine);
      if (!location) return null;
      const store = await openStore(location);
      t.after(() => store.close());
      return { store, location };
    }

    /** Model m with versions 1 and 2, `production` on `version` (set by an operator through the registry). */
    async function withProduction(t: TestContext, version: string): Promise<{ store: Store; registry: RegistryService } | null> {
      const opened = await open(t);
      if (!opened) return null;
      const { store } = opened;
      await seedVersions(store, 'm', ['1', '2']);
      const registry = new RegistryService(store);
      await registry.setAlias('m', 'production', version, ADMIN);
      return { store, registry };
    }

    /** Model wine with versions 1 and 2, a registry whose retirements check for rollouts as the server's do, and the rollout store. */
    async function withRetirementGuard(t: TestContext) {
      const opened = await open(t);
      if (!opened) return null;
      const { store } = opened;
      await seedVersions(store, 'wine', ['1', '2']);
      const holds = new RolloutHolds(store.engine);
      const registry = new RegistryService(store, { retirementBlocker: (model, version, db) => holds.ofCandidate(model, version, db) });
      return { store, registry, rollouts: new StoreRolloutRepository(store.engine) };
    }

    test('an operator clearing an alias while another moves it: they take turns, and each audit names the version it replaced', async (t) => {
      const world = await withProduction(t, '1');
      if (!world) return;
      const { store, registry } = world;

      // Right after the clear has read the alias (at 1), another operator moves it to 2.
      let mover: Promise<unknown> | undefined;
      wrap(t, ModelsRepository.prototype, 'getAlias', (original) =>
        async function (this: ModelsRepository, ...args: Parameters<typeof original>) {
          const found = await original.apply(this, args);
          if (!mover) {
            mover = registry.setAlias('m', 'production', '2', ADMIN);
            // Without turns it commits now (PostgreSQL); with them it waits for the clear.
            await Promise.race([mover, sleep(300)]);
          }
          return found;
        },
      );
      await registry.setAlias('m', 'production', null, ADMIN);
      await mover;
      assert.equal((await store.models.getAlias('m', 'production'))?.version, '2', 'the move made after the clear stays');
      const audit = (await store.audit.list({ limit: 10 })).filter((entry) => entry.target === 'm:production').reverse();
      assert.deepEqual(
        audit.map((entry) => [entry.action, entry.details]),
        [
          ['alias.set', { from: null, to: '1' }],
          ['alias.clear', { from: '1' }],
          ['alias.set', { from: null, to: '2' }],
        ],
      );
    });

    test('a failed version loses the production alias only while it holds it: an operator moving it meanwhile keeps the move', async (t) => {
      const world = await withProduction(t, '2');
      if (!world) return;
      const { store, registry } = world;

      // Right before the rollout's transaction takes the alias away, the operator moves it to 1;
      // the move waits for the rollout's transaction (the model's lock; SQLite: its one writer).
      let operator: Promise<unknown> | undefined;
      wrap(t, ModelsRepository.prototype, 'deleteAlias', (original) =>
        async function (this: ModelsRepository, ...args: Parameters<typeof original>) {
          if (!operator && args[1] === 'production') {
            operator = registry.setAlias('m', 'production', '1', ADMIN);
            await sleep(100);
          }
          return original.apply(this, args);
        },
      );
      await new RegistryModelStatus(store).setVersionStatus({ commandId: 'cmd-1', model: 'm', version: '2', status: 'failed', reason: 'analysis failed' });
      await operator;

      assert.equal((await store.models.getAlias('m', 'production'))?.version, '1', "the operator's move stays");
      const audit = (await store.audit.list({ limit: 20 })).reverse();
      const clears = audit.filter((entry) => entry.action === 'alias.clear');
      assert.equal(clears.length, 1, 'the rollout took it from 2 first, then the operator set 1');
      assert.ok(audit.some((entry) => entry.action === 'version.status' && entry.target === 'm@2'));
      assert.deepEqual(await new VersionStatusRepository(store.engine).productionVersions('m'), ['1']);
    });

    test('a failure racing an operator\'s move of the production alias onto the failing version: the version holding the alias is the one production version', async (t) => {
      const world = await withProduction(t, '1');
      if (!world) return;
      const { store, registry } = world;

      // Right after the rollout's transaction records 2 failed, the operator moves production to 2.
      let operator: Promise<unknown> | undefined;
      wrap(t, VersionStatusRepository.prototype, 'record', (original) =>
        async function (this: VersionStatusRepository, ...args: Parameters<typeof original>) {
          const recorded = await original.apply(this, args);
          if (!operator && args[0].status === 'failed') {
            operator = registry.setAlias('m', 'production', '2', ADMIN);
            await sleep(200);
          }
          return recorded;
        },
      );
      await new RegistryModelStatus(store).setVersionStatus({ commandId: 'cmd-1', model: 'm', version: '2', status: 'failed', reason: 'analysis failed' });
      await operator;

      const holder = (await store.models.getAlias('m', 'production'))?.version ?? null;
      const statuses = new VersionStatusRepository(store.engine);
      assert.deepEqual(await statuses.productionVersions('m'), holder === null ? [] : [holder], `the alias is on ${holder}`);
      // The failure came first; the operator's later move wins.
      assert.equal(holder, '2');
      assert.deepEqual([(await statuses.current('m', '2'))?.status, (await statuses.current('m', '1'))?.status], ['production', 'superseded']);
    });

    test('two servers starting at once with the same FLEETPRUNE_ADMIN_TOKEN both start, with one env-admin token', async (t) => {
      const opened = await open(t);
      if (!opened) return;
      const other = await openStore(opened.location);
      t.after(() => other.close());
      // Both look for env-admin before either writes it.
      wrap(t, TokensRepository.prototype, 'get', (original) =>
        async function (this: TokensRepository, id: string) {
          const found = await original.call(this, id);
          await sleep(100);
          return found;
        },
      );
      const env = 'fp_same-env-admin-token-00000000';
      const results = await Promise.allSettled([new TokenService(opened.store).bootstrapAdmin(env), new TokenService(other).bootstrapAdmin(env)]);
      assert.deepEqual(
        results.map((result) => (result.status === 'fulfilled' ? 'ok' : `${result.reason.name}: ${result.reason.message}`)),
        ['ok', 'ok'],
      );
      const principal = await new TokenService(other).authenticate(`Bearer ${env}`);
      assert.deepEqual([principal.tokenId, principal.role], ['env-admin', 'admin']);
      assert.equal((await opened.store.tokens.list()).length, 1);
    });

    test('two assignment answers of one device ingested at once both move its slots', async (t) => {
      const opened = await open(t);
      if (!opened) return;
      const fleet = new FleetStore(opened.store);
      const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: { answered() {} } as never });
      const X = { model: 'm', version: 'x', sha256: 'a'.repeat(64) };
      const C = { model: 'm', version: 'c', sha256: 'c'.repeat(64) };
      const Y = { model: 'n', version: 'y', sha256: 'e'.repeat(64) };
      const now = new Date().toISOString();
      await fleet.repos.devices.insert({ id: 'dev-1', labels: {}, secretHash: 'h', tokenId: 't', enrolledAt: now, enrolledBy: 'x' });
      await fleet.repos.devices.setSlots('dev-1', { active: X, candidate: null, previous: null }, now);
      for (const [id, ref, role] of [['assign-A', C, 'candidate'], ['assign-B', Y, 'active']] as const) {
        await fleet.repos.assignments.insert({ id, deviceId: 'dev-1', model: ref.model, version: ref.version, artifactId: ref.sha256, role, issuedAt: now, issuedBy: 'x', state: 'published', reason: null, updatedAt: now });
      }
      // Both read the device before either writes its new slots.
      wrap(t, DevicesRepository.prototype, 'get', (original) =>
        async function (this: DevicesRepository, id: string) {
          const found = await original.call(this, id);
          await sleep(100);
          return found;
        },
      );
      const base = { schema: 1 as const, deviceId: 'dev-1', createdAt: now, kind: 'assignment' as const, reason: null };
      const outcomes = await Promise.all([
        ingest.ingestReport({ ...base, id: 'report-1', assignmentId: 'assign-A', outcome: 'installed', role: 'candidate', ...C }),
        ingest.ingestReport({ ...base, id: 'report-2', assignmentId: 'assign-B', outcome: 'activated', role: 'active', ...Y }),
      ]);
      assert.deepEqual(outcomes, ['ingested', 'ingested']);
      const device = (await fleet.repos.devices.get('dev-1'))!;
      // In either order: Y active (X its previous), C the candidate.
      assert.deepEqual({ active: device.active?.version, candidate: device.candidate?.version, previous: device.previous?.version }, { active: 'y', candidate: 'c', previous: 'x' });
    });

    test('a version retired while a rollout of it starts: the start is refused (the retirement saw no rollout), and no rollout is stored', async (t) => {
      const world = await withRetirementGuard(t);
      if (!world) return;
      const { registry, rollouts } = world;
      const start = new ReducerHarness(specOf(STAGED_STEPS), undefined, '1', 'ro-race');

      // Right after the retirement found no rollout of wine@2, a rollout of it is created.
      let creating: Promise<unknown> | undefined;
      wrap(t, RolloutHolds.prototype, 'ofCandidate', (original) =>
        async function (this: RolloutHolds, ...args: Parameters<typeof original>) {
          const found = await original.apply(this, args);
          if (!creating) {
            creating = rollouts.create({ state: start.state, pendingActions: start.actions, decisions: start.decisions });
            creating.catch(() => {}); // awaited below
            // Without turns it commits now; with them it waits for the retirement.
            await Promise.race([creating, sleep(300)]);
          }
          return found;
        },
      );
      const retired = await registry.setRetired('wine', '2', true, ADMIN);
      assert.equal(retired.retired, true);
      await assert.rejects(creating!, (error: unknown) => error instanceof CandidateRetiredError && error.message === 'candidateVersion: wine@2 is retired');
      assert.deepEqual(await rollouts.list(), [], 'no rollout of the retired version');
    });

    test('a rollout under way keeps its candidate from being retired, and a retired candidate from being started', async (t) => {
      const world = await withRetirementGuard(t);
      if (!world) return;
      const { store, registry, rollouts } = world;
      // wine has no production version (seedVersions sets no alias): none is what the starts read.
      const first = new ReducerHarness(specOf(STAGED_STEPS), undefined, null, 'ro-first');
      await rollouts.create({ state: first.state, pendingActions: first.actions, decisions: first.decisions });
      await assert.rejects(registry.setRetired('wine', '2', true, ADMIN), /^ServiceError: wine@2 is the candidate of rollout ro-first of wine \(Progressing\); finish, abort or roll it back first$/);
      assert.equal((await store.models.getVersion('wine', '2'))?.retired, false);
      await registry.setRetired('wine', '1', true, ADMIN);
      // (A fleet running 0.9: a rollout of the version its targets run is refused before the store.)
      const other = new ReducerHarness(specOf(STAGED_STEPS, { candidateVersion: '1' }), fleetOf(20).map((device) => ({ ...device, baseline: '0.9' })), null, 'ro-other');
      await assert.rejects(rollouts.create({ state: other.state, pendingActions: [], decisions: [] }), CandidateRetiredError);
      assert.deepEqual(await rollouts.list(), ['ro-first']);
    });

    test('a database migrated by a newer fleetprune is refused on one line, naming what it does not know', async (t) => {
      const opened = await open(t);
      if (!opened) return;
      const newer = "INSERT INTO schema_migrations (domain, version, name, applied_at) VALUES (?, ?, 'from a newer server', '2030-01-01T00:00:00Z')";
      await opened.store.engine.run(newer, ['fleet', 99]);
      await opened.store.engine.run(newer, ['billing', 1]);
      const refused = /^the database was migrated by a newer fleetprune \(it has migrations billing:1, fleet:99 that this version does not know; it knows audit:\d+ auth:\d+ fleet:\d+ jobs:\d+ registry:\d+ rollouts:\d+\); run a version that knows them \(`fleetprune --version` names the migrations a build knows\) or restore a backup$/;
      await assert.rejects(openStore(opened.location), (error) => error instanceof UserError && refused.test(error.message));
      // What `fleetprune server` says: that line, exit 2.
      if (opened.location.engine === 'sqlite') {
        const ports = ['--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'];
        const result = await runCli(['server', '--data-dir', opened.location.dataDir, ...ports], {}, { timeoutMs: 30_000 });
        assert.equal(result.code, 2, result.stderr);
        assert.ok(isOneLineError(result.stderr), result.stderr);
        assert.match(result.stderr.trim(), new RegExp(`^fleetprune: ${refused.source.slice(1)}`));
      }
    });
  });
}

test('postgres: a --database-schema another server is creating at the same moment does not fail the start', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return;
  const schema = location.schema!;
  // Another server's CREATE SCHEMA, not yet committed: ours waits for it, then finds the name taken.
  const other = new pg.Client({ connectionString: location.databaseUrl });
  await other.connect();
  t.after(() => other.end());
  await other.query('BEGIN');
  await other.query(`CREATE SCHEMA ${schema}`);
  const opening = openStore(location).then(
    (store) => ({ store }),
    (error: Error) => ({ error }),
  );
  // Watched from a third connection: pg_stat_activity stays as first read within a transaction.
  const watcher = new pg.Client({ connectionString: location.databaseUrl });
  await watcher.connect();
  t.after(() => watcher.end());
  let waiting = false;
  for (let waited = 0; !waiting && waited < 5000; waited += 20) {
    const rows = await watcher.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query = $1", [`CREATE SCHEMA IF NOT EXISTS "${schema}"`]);
    waiting = rows.rowCount === 1;
    if (!waiting) await sleep(20);
  }
  assert.ok(waiting, 'our CREATE SCHEMA waits for the other one');
  await other.query('COMMIT');
  const opened = await opening;
  if ('error' in opened) assert.fail(`the start failed: ${opened.error.message}`);
  t.after(() => opened.store.close());
  assert.equal((await opened.store.engine.get<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations'))?.n, ALL_MIGRATIONS.length, 'every migration applied once');
});
