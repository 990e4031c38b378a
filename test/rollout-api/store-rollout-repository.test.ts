import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { openStore } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { RevisionConflictError, type RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { ModelsRepository } from '../../server/store/repositories/models-repository.ts';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import { STORE_ENGINES, freshStoreLocation } from '../server/helpers/store-engines.ts';
import { ReducerHarness, STAGED_STEPS, fleetOf, specOf } from '../rollout/rollout-fixtures.ts';
import { registerVersion } from './helpers/rollout-fixtures.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import type { DecisionLogEntry, RolloutState } from '../../server/rollout/rollout-state.ts';
import { evidenceRetention } from '../../server/rollout/evidence-retention.ts';
import type { Logger } from '../../shared/util/log.ts';

const DAY_MS = 86_400_000;

/** A relative accuracy measurement over `devices` devices, as takeMeasurement records it. */
function relativeMeasurement(devices: number): Measurement {
  const ids = Array.from({ length: devices }, (_, i) => `device-${String(i).padStart(4, '0')}`);
  const candidate = ids.map((device, i) => ({ device, value: 90 + (i % 5) }));
  const baseline = ids.map((device, i) => ({ device, value: 91 + (i % 3) }));
  const selector = `{device=~"${ids.join('|')}"}`;
  return {
    metric: 'accuracy',
    index: 0,
    phase: 'Successful',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:00:01.000Z',
    provider: 'builtin',
    queries: { candidate: `fleetprune_agent_accuracy${selector}`, baseline: `fleetprune_agent_accuracy_baseline${selector}` },
    value: candidate.map((c) => c.value),
    baseline: baseline.map((b) => b.value),
    samples: devices,
    thresholds: { minSamples: 3, success: 90.5 },
    relative: {
      metric: 'accuracy', unit: 'points', comparator: '>=', tolerance: 0.5, toleranceMode: 'absolute', confidence: 0.95,
      candidate, baseline, candidateMedian: 92, baselineMedian: 92, bound: 91.5, shift: 0.5, p: 0.22,
      wilcoxon: { w: 6, z: 1.1, p: 0.12, method: 'exact' }, mannWhitney: { u: 10, z: 1.2, p: 0.11, method: 'asymptotic' },
    },
    message: 'accuracy: candidate 92.00 vs baseline 92.00',
  };
}

/**
 * list skips (offset) and cuts (limit) in the store, newest first, by model too; count counts what
 * list finds without them. The same on every store: run below on SQLite, PostgreSQL and in memory.
 */
async function checkPagingAndCount(repo: RolloutRepository): Promise<void> {
  const h = new ReducerHarness(specOf(STAGED_STEPS), fleetOf(2), '1', 'ro-0');
  const finished = { ...h.state, phase: 'Aborted' as const, devices: h.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })) };
  for (let n = 0; n < 7; n++) {
    // Even ones are wine, odd ones beer; the first two are finished.
    const state = n < 2 ? finished : h.state;
    await repo.create({ state: { ...state, id: `ro-${n}`, spec: { ...state.spec, model: n % 2 === 0 ? 'wine' : 'beer' } }, pendingActions: [], decisions: [] });
  }
  const newestFirst = ['ro-6', 'ro-5', 'ro-4', 'ro-3', 'ro-2', 'ro-1', 'ro-0'];
  assert.deepEqual(await repo.list(), newestFirst);
  assert.deepEqual(await repo.list({ offset: 2, limit: 3 }), ['ro-4', 'ro-3', 'ro-2']);
  assert.deepEqual(await repo.list({ limit: 2 }), ['ro-6', 'ro-5']);
  assert.deepEqual(await repo.list({ offset: 5 }), ['ro-1', 'ro-0'], 'an offset without a limit: the rest');
  assert.deepEqual(await repo.list({ offset: 5, limit: 10 }), ['ro-1', 'ro-0']);
  assert.deepEqual(await repo.list({ offset: 7, limit: 10 }), []);
  assert.deepEqual(await repo.list({ offset: 0, limit: 0 }), []);
  assert.deepEqual(await repo.list({ model: 'wine', offset: 1, limit: 2 }), ['ro-4', 'ro-2']);
  assert.deepEqual(await repo.list({ model: 'beer', unfinished: true, offset: 1 }), ['ro-3']);
  assert.deepEqual([await repo.count(), await repo.count({ model: 'wine' }), await repo.count({ model: 'beer' }), await repo.count({ model: 'cider' })], [7, 4, 3, 0]);
  assert.deepEqual([await repo.count({ unfinished: true }), await repo.count({ model: 'wine', unfinished: true })], [5, 3]);
  // newerThan: a rollout's place in the list (of the model), for the page that holds it; none for an unknown one.
  const newerThan = (id: string, model?: string) => repo.count({ newerThan: id, ...(model === undefined ? {} : { model }) });
  assert.deepEqual([await newerThan('ro-6'), await newerThan('ro-2'), await newerThan('ro-0'), await newerThan('ro-2', 'wine'), await newerThan('ro-1', 'beer'), await newerThan('nope')], [0, 4, 6, 2, 2, 0]);
}

test('in-memory rollout repository: paging and count as the stores do', async () => {
  await checkPagingAndCount(new InMemoryRolloutRepository());
});

test("RolloutService.list asks the store for the page only, and reads only the page's rollouts; count counts them all", async () => {
  const repository = new InMemoryRolloutRepository();
  await checkPagingAndCount(repository);
  const read: string[] = [];
  const asked: unknown[] = [];
  const spy: Pick<RolloutRepository, 'list' | 'count' | 'revisionOf' | 'load'> = {
    list: (filter) => (asked.push(filter), repository.list(filter)),
    count: (filter) => repository.count(filter),
    revisionOf: (id) => (read.push(id), repository.revisionOf(id)),
    load: (id) => (read.push(id), repository.load(id)),
  };
  const service = new RolloutService({ repository: spy, controller: () => undefined } as unknown as RolloutServiceOptions);
  assert.deepEqual((await service.list({ offset: 4, limit: 2 })).map((summary) => summary.id), ['ro-2', 'ro-1']);
  assert.deepEqual(asked, [{ offset: 4, limit: 2 }]);
  assert.deepEqual([...new Set(read)], ['ro-2', 'ro-1'], 'the 4 newer rollouts skipped are not read');
  assert.deepEqual((await service.list({ model: 'wine', offset: 1 })).map((summary) => summary.id), ['ro-4', 'ro-2', 'ro-0']);
  assert.deepEqual([await service.count(), await service.count({ model: 'beer' })], [7, 3]);
  // placeOf: where a rollout is (of the model), or not found naming why.
  assert.deepEqual([await service.placeOf('ro-2'), await service.placeOf('ro-2', { model: 'wine' })], [4, 2]);
  await assert.rejects(service.placeOf('nope'), { code: 'not_found', message: 'no rollout nope' });
  await assert.rejects(service.placeOf('ro-1', { model: 'wine' }), { code: 'not_found', message: 'rollout ro-1 is of model beer, not wine' });
});

for (const engine of STORE_ENGINES) {
  describe(`store rollout repository (${engine})`, () => {
    /** A store holding wine@1..3, with the rollout's and an operator's ways to make one production; undefined without the engine. */
    const wineVersions = async (t: TestContext) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return undefined;
      const store = await openStore(location);
      t.after(() => store.close());
      for (const version of ['1', '2', '3']) await registerVersion(store, 'wine', version);
      const status = new RegistryModelStatus(store);
      const statusOf = async (version: string) => {
        const found = await status.versionStatus('wine', version);
        return found ? [found.status, found.reason] : null;
      };
      return { store, status, statusOf, registry: new RegistryService(store), operator: { tokenId: 'ops', role: 'operator' as const, label: 'ops' } };
    };

    test('list pages by offset and limit in SQL; count counts, by model too', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      await checkPagingAndCount(new StoreRolloutRepository(store.engine));
    });

    test('create, load, list, commit with revision check, executed ids and decisions', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      const repo = new StoreRolloutRepository(store.engine);

      const a = new ReducerHarness(specOf(STAGED_STEPS), undefined, '1', 'ro-a');
      const b = new ReducerHarness(specOf(STAGED_STEPS, { model: 'beer' }), undefined, '1', 'ro-b');
      await repo.create({ state: a.state, pendingActions: a.actions, decisions: a.decisions });
      await repo.create({ state: b.state, pendingActions: b.actions, decisions: b.decisions });
      await assert.rejects(repo.create({ state: a.state, pendingActions: [], decisions: [] }), /already exists/);

      const loaded = await repo.load('ro-a');
      assert.equal(loaded?.revision, 1);
      assert.deepEqual(loaded?.state, a.state);
      assert.deepEqual(loaded?.pendingActions, a.actions);
      assert.equal(await repo.load('ro-none'), undefined);
      assert.deepEqual(await repo.list(), ['ro-b', 'ro-a']);
      assert.deepEqual(await repo.list({ model: 'wine' }), ['ro-a']);
      assert.deepEqual(await repo.list({ unfinished: true }), ['ro-b', 'ro-a']);

      const assign = a.last('assign');
      a.deliver(assign);
      const newDecisions = a.decisions.slice(loaded!.state ? a.decisions.length - 1 : 0);
      const revision = await repo.commit('ro-a', { expectedRevision: 1, state: a.state, pendingActions: [], executedActionIds: [assign.id], decisions: newDecisions });
      assert.equal(revision, 2);
      assert.equal(await repo.isExecuted('ro-a', assign.id), true);
      assert.equal(await repo.isExecuted('ro-b', assign.id), false);
      assert.deepEqual(await repo.executedActions('ro-a'), [assign.id]);

      // A stale revision changes nothing, not even the executed ids or the decision log.
      const before = await repo.decisions('ro-a');
      await assert.rejects(
        repo.commit('ro-a', { expectedRevision: 1, state: b.state, pendingActions: [], executedActionIds: ['x-1'], decisions: [{ ...a.decisions[0]!, id: 'd-stale' }] }),
        RevisionConflictError,
      );
      assert.equal((await repo.load('ro-a'))?.revision, 2);
      assert.equal(await repo.isExecuted('ro-a', 'x-1'), false);
      assert.deepEqual(await repo.decisions('ro-a'), before);

      const all = await repo.decisions('ro-a');
      assert.ok(all.length >= 2);
      assert.deepEqual(await repo.decisions('ro-a', { afterId: all[0]!.id, limit: 1 }), [all[1]]);
      assert.deepEqual(await repo.decisions('ro-a', { afterId: all.at(-1)!.id }), []);

      // Terminal with nothing pending: no longer unfinished.
      a.send({ type: 'abort', at: a.at, by: 'alice' });
      for (const action of a.actions.filter((x) => x.kind === 'revert' || x.kind === 'markVersion' || x.kind === 'stopAnalysis')) a.deliver(action);
      await repo.commit('ro-a', { expectedRevision: 2, state: { ...a.state, phase: 'Aborted', devices: a.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })) }, pendingActions: [], executedActionIds: [], decisions: [] });
      assert.deepEqual(await repo.list({ unfinished: true }), ['ro-b']);
    });

    test('retention: rollouts finished before the cutoff lose their per-device evidence once; verdicts stay; others are untouched', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      const repo = new StoreRolloutRepository(store.engine);
      const now = Date.parse('2026-06-01T00:00:00.000Z');
      const rollout = async (id: string, finished: boolean, updatedDaysAgo: number) => {
        const h = new ReducerHarness(specOf(STAGED_STEPS), undefined, '1', id);
        // Its last analysis run stays in its state, with that run's measurements.
        const analysis = { runId: `${id}-run-1`, stepIndex: 0, startedAt: now - updatedDaysAgo * DAY_MS, phase: 'Successful' as const, measurements: [relativeMeasurement(200)] };
        const state: RolloutState = finished
          ? { ...h.state, phase: 'Aborted', analysis, devices: h.state.devices.map((d) => ({ ...d, delivery: 'delivered' as const })), updatedAt: now - updatedDaysAgo * DAY_MS }
          : { ...h.state, analysis, updatedAt: now - updatedDaysAgo * DAY_MS };
        const measured: DecisionLogEntry = { id: `${id}-m0`, rolloutId: id, at: state.updatedAt, kind: 'measurement', stepIndex: 0, verdict: 'Successful', message: 'measured', measurement: relativeMeasurement(200) };
        await repo.create({ state, pendingActions: finished ? [] : h.actions, decisions: [...h.decisions, measured] });
        return measured;
      };
      const old = await rollout('ro-old', true, 100);
      const recent = await rollout('ro-recent', true, 10);
      const running = await rollout('ro-running', false, 100);
      const logged: string[] = [];
      const log = { info: (_: unknown, message: string) => logged.push(message), warn: (_: unknown, message: string) => logged.push(message) } as unknown as Logger;
      const sweep = evidenceRetention(repo, { days: 90, everyMs: 3_600_000, log, clock: () => new Date(now) });

      const sizeOf = async (id: string) => JSON.stringify(await repo.decisions(id)).length;
      const oldSize = await sizeOf('ro-old');
      // A stored entry that does not parse (edited by hand, say) is skipped, not a sweep that fails for ever.
      const broken = "INSERT INTO rollout_decisions (rollout_id, decision_id, at, entry) VALUES ('ro-old', 'ro-old-broken', '2026-01-01T00:00:00.000Z', '{not json')";
      await store.engine.run(broken);
      for (const id of ['ro-old', 'ro-recent', 'ro-running']) await store.engine.run('INSERT INTO rollout_actions (rollout_id, action_id, executed_at) VALUES (?, ?, ?)', [id, `${id}-a1`, '2026-01-01T00:00:00.000Z']);
      const states = async () => Object.fromEntries(await Promise.all(['ro-old', 'ro-recent', 'ro-running'].map(async (id) => [id, (await repo.load(id))!] as const)));
      const before = await states();
      assert.equal(await sweep.sweep(), 3, 'one measurement trimmed in the log, one in the state; one executed-action record deleted');
      assert.deepEqual([await repo.executedActions('ro-old'), await repo.executedActions('ro-recent'), await repo.executedActions('ro-running')], [[], ['ro-recent-a1'], ['ro-running-a1']]);
      const after = await states();
      const stateMeasurement = after['ro-old']!.state.analysis!.measurements[0]!;
      assert.deepEqual([stateMeasurement.trimmed?.devices, stateMeasurement.value, stateMeasurement.relative?.candidate], [200, [92], []]);
      assert.ok(JSON.stringify(after['ro-old']!.state).length < JSON.stringify(before['ro-old']!.state).length / 2, 'the state shrank');
      assert.deepEqual({ ...after['ro-old']!.state, analysis: undefined }, { ...before['ro-old']!.state, analysis: undefined }, 'nothing else in the state changed');
      assert.equal(after['ro-old']!.revision, before['ro-old']!.revision);
      assert.deepEqual([after['ro-recent'], after['ro-running']], [before['ro-recent'], before['ro-running']], 'recent and unfinished states untouched');
      assert.deepEqual(await store.engine.all("SELECT entry, evidence_trimmed FROM rollout_decisions WHERE decision_id = 'ro-old-broken'"), [{ entry: '{not json', evidence_trimmed: 1 }]);
      await store.engine.run("DELETE FROM rollout_decisions WHERE decision_id = 'ro-old-broken'");
      assert.deepEqual(logged, ['trimmed per-device evidence and executed-action records of finished rollouts older than 90 days (--report-retention-days)']);
      const trimmed = (await repo.decisions('ro-old')).find((d) => d.id === old.id)!.measurement!;
      assert.deepEqual(trimmed.trimmed, { at: new Date(now).toISOString(), devices: 200 });
      assert.deepEqual(trimmed.value, [92], 'the value vector becomes its median (what the dashboard charts)');
      // The baseline too: its median is 92, its mean 91.995.
      assert.deepEqual(trimmed.baseline, [92], 'the baseline vector becomes its median, not its mean');
      assert.deepEqual([trimmed.relative!.candidate, trimmed.relative!.baseline], [[], []]);
      assert.deepEqual([trimmed.phase, trimmed.relative!.p, trimmed.relative!.candidateMedian, trimmed.thresholds], [old.measurement!.phase, 0.22, 92, old.measurement!.thresholds]);
      assert.match(trimmed.queries.candidate!, /characters, trimmed\)$/);
      assert.ok((await sizeOf('ro-old')) < oldSize / 5, `the log shrank (${oldSize} → ${await sizeOf('ro-old')} characters)`);
      assert.deepEqual((await repo.decisions('ro-recent')).find((d) => d.id === recent.id), recent, 'finished within the window: untouched');
      assert.deepEqual((await repo.decisions('ro-running')).find((d) => d.id === running.id), running, 'unfinished: untouched');

      assert.equal(await sweep.sweep(), 0, 'each entry is trimmed once');
      assert.equal(await evidenceRetention(repo, { days: 0, everyMs: 1, log, clock: () => new Date(now + 1000 * DAY_MS) }).sweep(), 0, '0 keeps everything');
    });

    test('version status over the registry: production alias (un-retiring a restored version), failed, idempotent by command id, audited', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      await registerVersion(store, 'wine', '1');
      await registerVersion(store, 'wine', '2');
      const status = new RegistryModelStatus(store);
      assert.equal(await status.productionVersion('wine'), null);
      await status.setVersionStatus({ commandId: 'ro-a-a1', model: 'wine', version: '2', status: 'production', reason: 'promoted' });
      await status.setVersionStatus({ commandId: 'ro-a-a1', model: 'wine', version: '2', status: 'production', reason: 'promoted' });
      assert.equal(await status.productionVersion('wine'), '2');
      await status.setVersionStatus({ commandId: 'ro-a-a2', model: 'wine', version: '2', status: 'rolled-back', reason: 'operator' });
      assert.deepEqual((await status.versionStatus('wine', '2'))?.status, 'rolled-back');
      assert.equal(await status.productionVersion('wine'), null, 'a rolled-back version loses the production alias');
      // v1 was retired after v2's promotion; the rollback restores it all the same, and un-retires it.
      await store.models.setRetired('wine', '1', true);
      await status.setVersionStatus({ commandId: 'ro-a-a4', model: 'wine', version: '1', status: 'production', reason: 'restored' });
      assert.deepEqual(await store.models.getVersion('wine', '1').then((v) => [v?.retired, v?.aliases]), [false, ['production']]);
      const audit = await store.audit.list({ limit: 50 });
      assert.equal(audit.filter((entry) => entry.action === 'version.unretire' && entry.target === 'wine@1' && entry.actor === 'rollout-controller').length, 1);
      assert.equal(audit.filter((entry) => entry.action === 'version.status').length, 3);
      assert.equal(audit.filter((entry) => entry.action === 'alias.set' && entry.actor === 'rollout-controller').length, 2);
      await assert.rejects(status.setVersionStatus({ commandId: 'ro-a-a3', model: 'wine', version: '9', status: 'production', reason: 'x' }), /not in the registry/);
      assert.equal(await status.productionVersion('wine'), '1');
    });

    test('a second promotion supersedes the first production version (audited, once per command id); a rollback restores it as production', async (t) => {
      const fixture = await wineVersions(t);
      if (!fixture) return;
      const { store, status, statusOf } = fixture;
      // Rollout A makes wine@2 production, rollout B then wine@3.
      await status.setVersionStatus({ commandId: 'ro-a-a9', model: 'wine', version: '2', status: 'production', reason: 'promoted to 100% of 4 devices' });
      await status.setVersionStatus({ commandId: 'ro-b-a9', model: 'wine', version: '3', status: 'production', reason: 'promoted to 100% of 4 devices' });
      assert.deepEqual(await statusOf('2'), ['superseded', 'superseded by wine@3']);
      assert.deepEqual(await statusOf('3'), ['production', 'promoted to 100% of 4 devices']);
      assert.equal(await statusOf('1'), null, 'a version that never was production keeps no status');
      assert.equal(await status.productionVersion('wine'), '3');
      const superseded = async () =>
        (await store.audit.list({ limit: 100 })).filter((entry) => entry.action === 'version.status' && (entry.details as { status?: string }).status === 'superseded');
      assert.deepEqual(
        (await superseded()).map((entry) => [entry.actor, entry.target, entry.details]),
        [['rollout-controller', 'wine@2', { status: 'superseded', reason: 'superseded by wine@3', commandId: 'ro-b-a9:supersedes:2' }]],
      );

      // Replayed (a restart before the action was recorded as executed): nothing changes, nothing more is audited.
      const before = (await store.audit.list({ limit: 100 })).length;
      await status.setVersionStatus({ commandId: 'ro-b-a9', model: 'wine', version: '3', status: 'production', reason: 'promoted to 100% of 4 devices' });
      assert.deepEqual(await statusOf('2'), ['superseded', 'superseded by wine@3']);
      assert.deepEqual(await statusOf('3'), ['production', 'promoted to 100% of 4 devices']);
      assert.equal((await store.audit.list({ limit: 100 })).length, before);

      // Rollback of B, in the state machine's order: the candidate rolled back, then the previous production restored.
      await status.setVersionStatus({ commandId: 'ro-b-a12', model: 'wine', version: '3', status: 'rolled-back', reason: 'rolled back by token:ops' });
      await status.setVersionStatus({ commandId: 'ro-b-a13', model: 'wine', version: '2', status: 'production', reason: 'restored by rollback of 3' });
      assert.deepEqual(await statusOf('2'), ['production', 'restored by rollback of 3']);
      assert.deepEqual(await statusOf('3'), ['rolled-back', 'rolled back by token:ops'], 'the rolled-back candidate is not marked superseded');
      assert.equal(await status.productionVersion('wine'), '2');
      assert.equal((await superseded()).length, 1);
    });

    test('moving the production alias by hand marks the version production and supersedes the one before it; a rollout then supersedes it', async (t) => {
      const fixture = await wineVersions(t);
      if (!fixture) return;
      const { store, status, statusOf, registry, operator } = fixture;
      await status.setVersionStatus({ commandId: 'ro-a-a9', model: 'wine', version: '1', status: 'production', reason: 'promoted' });
      await registry.setAlias('wine', 'production', '2', operator);
      assert.deepEqual(await statusOf('1'), ['superseded', 'superseded by wine@2']);
      assert.deepEqual(await statusOf('2'), ['production', 'production alias set by token:ops']);
      const audited = (await store.audit.list({ limit: 100 })).filter((entry) => entry.action === 'version.status' && entry.actor === 'token:ops');
      assert.deepEqual(audited.map((entry) => [entry.target, (entry.details as { status: string }).status]).sort(), [['wine@1', 'superseded'], ['wine@2', 'production']]);
      // The same move again changes nothing; the candidate alias gives no status.
      await registry.setAlias('wine', 'production', '2', operator);
      await registry.setAlias('wine', 'candidate', '3', operator);
      assert.equal((await store.audit.list({ limit: 100 })).filter((entry) => entry.action === 'version.status' && entry.actor === 'token:ops').length, 2);
      assert.equal(await statusOf('3'), null);
      // A cleared alias withdraws the version: the model has no production until the next one.
      await registry.setAlias('wine', 'production', null, operator);
      assert.deepEqual(await statusOf('2'), ['withdrawn', 'production alias cleared by token:ops']);
      await status.setVersionStatus({ commandId: 'ro-b-a9', model: 'wine', version: '3', status: 'production', reason: 'promoted' });
      assert.deepEqual(await statusOf('2'), ['withdrawn', 'production alias cleared by token:ops']);
      assert.deepEqual(await statusOf('1'), ['superseded', 'superseded by wine@2']);
      assert.deepEqual(await statusOf('3'), ['production', 'promoted']);
    });

    test('a promotion racing an operator\'s move of the production alias: the one that moves the alias last is production, the other superseded', async (t) => {
      const fixture = await wineVersions(t);
      if (!fixture) return;
      const { store, status, registry, operator } = fixture;
      const statusOf = async (version: string) => (await fixture.statusOf(version))?.[0] ?? null;
      // wine@2 is production by hand while its rollout runs; the rollout then promotes it in full
      // just as the operator moves the alias on to wine@3.
      await registry.setAlias('wine', 'production', '2', operator);
      // The operator's transaction holds the model's lock until the promotion has started and waits for it.
      const proto = ModelsRepository.prototype;
      const lockModel = proto.lockModel;
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const operatorLocked = new Promise<void>((resolve) => (locked = resolve));
      let first = true;
      proto.lockModel = async function (this: ModelsRepository, name: string) {
        await lockModel.call(this, name);
        if (!first) return;
        first = false;
        locked();
        await released;
      };
      t.after(() => {
        proto.lockModel = lockModel;
      });
      const move = registry.setAlias('wine', 'production', '3', operator);
      await operatorLocked;
      const promotion = status.setVersionStatus({ commandId: 'ro-b-a9', model: 'wine', version: '2', status: 'production', reason: 'promoted' });
      await new Promise((resolve) => setTimeout(resolve, 300)); // the promotion runs up to the model's lock
      release();
      await Promise.all([move, promotion]);
      proto.lockModel = lockModel;
      // The promotion moved the alias last.
      assert.equal(await status.productionVersion('wine'), '2');
      assert.deepEqual([await statusOf('2'), await statusOf('3')], ['production', 'superseded']);
      assert.deepEqual(await new VersionStatusRepository(store.engine).productionVersions('wine'), ['2']);
    });
  });
}
