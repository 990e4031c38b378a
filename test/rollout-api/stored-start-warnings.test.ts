import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import type { RolloutCommit, RolloutRepository } from '../../server/rollout/rollout-repository.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { DecisionLogEntry, RolloutAction, RolloutState } from '../../server/rollout/rollout-state.ts';
import { rolloutDetail } from '../../server/rollout/rollout-views.ts';
import { openStore } from '../../server/store/open-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import type { Principal } from '../../server/auth/principal.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { InMemoryFleet, InMemoryModelStatus } from '../rollout/in-memory-fleet.ts';
import { T0 } from '../rollout/rollout-fixtures.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { STORE_ENGINES, freshStoreLocation } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { registerVersion, stagedSpecYaml, testDevices } from './helpers/rollout-fixtures.ts';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';

// stagedSpecYaml's analysis: successCondition `result[0] >= 0` over a CPU-seconds counter (never negative).
const TRIVIAL = 'steps[1].analysis metric "server-cpu": successCondition "result[0] >= 0" is true for every result of 0 or more: unless the query can return negative values (counts, rates, durations and ratios cannot), it passes every measurement';
const LOOSE = 'steps[2].analysis metric "accuracy": tolerance 100 points: the bound (baseline − 100) is at most 0 points whatever the baseline (0-100), and no accuracy is below 0, so the check can never fail';
const withLooseCheck = (yaml: string) => yaml.replace('  - pause:', '  - analysis: {metrics: [{name: accuracy, minSamples: 1, relative: {metric: accuracy, tolerance: 100}}]}\n  - pause:');
const clean = () => stagedSpecYaml().replace('result[0] >= 0', 'result[0] >= 0.001');

interface DetailJson {
  id: string;
  warnings: string[];
  decisions: { id: string; kind: string; verdict: string; message: string; stepIndex: number }[];
}

/** The start decision, then one `warning` decision per warning (step 0), then the rest. */
function assertWarningsLogged(detail: DetailJson, warnings: readonly string[]): void {
  assert.deepEqual(detail.warnings, warnings);
  assert.equal(detail.decisions[0]?.kind, 'start');
  const logged = detail.decisions.filter((decision) => decision.kind === 'warning');
  assert.deepEqual(logged.map((decision) => [decision.verdict, decision.message, decision.stepIndex]), warnings.map((warning) => ['warning', warning, 0]));
  assert.deepEqual(detail.decisions.slice(1, 1 + warnings.length), logged, 'logged right after the start');
}

/** A RolloutService over `repository` with a real controller; the registry and audit log are stubs. */
function serviceOver(t: TestContext, repository: RolloutRepository): { service: RolloutService; controller: RolloutController } {
  const controller = new RolloutController({
    repository,
    fleet: new InMemoryFleet(testDevices(4)),
    models: new InMemoryModelStatus('1'),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler: new ManualScheduler(T0),
    newId: (() => {
      let n = 0;
      return () => `ro-warn-${++n}`;
    })(),
  });
  t.after(() => controller.stop());
  const store = {
    models: { getVersion: async (model: string, version: string) => ({ model, version, retired: false, manifest: { task: 'classification' } }) },
    audit: { append: async () => {} },
    engine: { get: async () => undefined }, // no version statuses recorded
  };
  return { service: new RolloutService({ store, repository, controller: () => controller } as unknown as RolloutServiceOptions), controller };
}

const ADMIN = { kind: 'token', name: 'admin', role: 'admin' } as unknown as Principal;

/**
 * The service records the warnings in the same create as the rollout (never a later commit), and
 * reads them back in the detail; a rollout without warnings has none. Run on every repository.
 */
async function checkStoredWithTheStart(t: TestContext, inner: RolloutRepository): Promise<void> {
  const created: { state: RolloutState; decisions: readonly DecisionLogEntry[] }[] = [];
  const commits: RolloutCommit[] = [];
  const spies: Partial<RolloutRepository> = {
    create: (record: { state: RolloutState; pendingActions: readonly RolloutAction[]; decisions: readonly DecisionLogEntry[] }) => (created.push(record), inner.create(record)),
    commit: (id: string, commit: RolloutCommit) => (commits.push(commit), inner.commit(id, commit)),
  };
  const repository = new Proxy(inner, {
    get: (target, property) => {
      const spy = spies[property as keyof RolloutRepository];
      if (spy) return spy;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const { service, controller } = serviceOver(t, repository);

  const started = await service.start(parseRolloutSpec(withLooseCheck(stagedSpecYaml()), 'spec'), ADMIN);
  assert.equal(created.length, 1);
  assert.deepEqual(
    created[0]!.decisions.filter((decision) => decision.kind === 'warning').map((decision) => decision.message),
    [TRIVIAL, LOOSE],
    'written by the create of the rollout itself',
  );
  assert.ok(commits.every((commit) => commit.decisions.every((decision) => decision.kind !== 'warning')), 'not by a later commit');
  const { record, decisions } = await service.get(started.state.id);
  assertWarningsLogged(JSON.parse(JSON.stringify(rolloutDetail(record, decisions))) as DetailJson, [TRIVIAL, LOOSE]);
  await service.command(started.state.id, 'abort', ADMIN);
  await controller.idle(); // its reverts sent: the model is free for the next rollout

  const none = await service.start(parseRolloutSpec(clean(), 'spec'), ADMIN);
  const plain = await service.get(none.state.id);
  assert.deepEqual(plain.decisions.filter((decision) => decision.kind === 'warning'), []);
  assertWarningsLogged(JSON.parse(JSON.stringify(rolloutDetail(plain.record, plain.decisions))) as DetailJson, []);
}

test('in-memory repository: the start warnings are stored with the rollout and shown in its detail', async (t) => {
  await checkStoredWithTheStart(t, new InMemoryRolloutRepository());
});

for (const engine of STORE_ENGINES) {
  describe(`start warnings stored (${engine})`, () => {
    test('the repository stores them with the rollout, in one create; the detail shows them', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      await checkStoredWithTheStart(t, new StoreRolloutRepository(store.engine));
    });

    test('REST and gRPC starts: GET /api/rollouts/:id, GetRollout and `rollout status` show them afterwards; a clean spec has none', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
      t.after(() => grpc.close());
      const abort = async (id: string) => {
        assert.equal((await s.request('POST', `/api/rollouts/${id}/abort`)).status, 200);
        // Its reverts sent: the model is free for the next rollout.
        await waitForRollout(s.request, id, (view) => view.pendingActions.length === 0);
      };
      const restDetail = async (id: string) => {
        const response = await s.request('GET', `/api/rollouts/${id}`);
        assert.equal(response.status, 200);
        return (await response.json()) as DetailJson;
      };
      const grpcDetail = async (id: string) => JSON.parse((await grpc.call('GetRollout', { id, device_states: 0 })).detail_json as string) as DetailJson;

      const rest = await s.request('POST', '/api/rollouts', { body: withLooseCheck(stagedSpecYaml()), contentType: 'application/yaml' });
      assert.equal(rest.status, 201);
      const viaRest = (await rest.json()) as { id: string; warnings: string[] };
      assert.deepEqual(viaRest.warnings, [TRIVIAL, LOOSE]);
      assertWarningsLogged(await restDetail(viaRest.id), [TRIVIAL, LOOSE]);
      assertWarningsLogged(await grpcDetail(viaRest.id), [TRIVIAL, LOOSE]);
      if (engine === 'sqlite') {
        // The human output of `rollout status` (the CLI's "get") lists them before the decision log.
        const cli = await runCli(['rollout', 'status', viaRest.id, '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.ok(cli.stdout.includes(`\nwarning: ${TRIVIAL}\nwarning: ${LOOSE}\ndecisions:\n`), cli.stdout);
        assert.match(cli.stdout, /step 1 {2}warning {2}warning: steps\[1\]\.analysis metric "server-cpu"/, 'and in the decision log');
      }
      await abort(viaRest.id);
      // Still there once it has finished.
      assertWarningsLogged(await restDetail(viaRest.id), [TRIVIAL, LOOSE]);

      // The abort marked wine@2 failed: starting it again warns so, naming the reason.
      const viaGrpc = (await grpc.call('StartRollout', { spec: stagedSpecYaml() })) as { id: string; warnings: string[] };
      assert.equal(viaGrpc.warnings.length, 2, JSON.stringify(viaGrpc.warnings));
      assert.equal(viaGrpc.warnings[0], TRIVIAL);
      assert.match(viaGrpc.warnings[1]!, /^candidateVersion: wine@2 is failed since \d{4}-\d\d-\d\dT[\d:.]+Z \(aborted by token:env-admin\); this rollout ships it again$/);
      assertWarningsLogged(await grpcDetail(viaGrpc.id), viaGrpc.warnings);
      assertWarningsLogged(await restDetail(viaGrpc.id), viaGrpc.warnings);
      await abort(viaGrpc.id);

      // Nothing to warn about: a clean spec of a version no rollout failed.
      await registerVersion(s.server.ctx.store, 'wine', '3');
      const plain = (await grpc.call('StartRollout', { spec: clean().replace('candidateVersion: "2"', 'candidateVersion: "3"') })) as { id: string; warnings: string[] };
      assert.deepEqual(plain.warnings, []);
      assertWarningsLogged(await grpcDetail(plain.id), []);
      assertWarningsLogged(await restDetail(plain.id), []);
      if (engine === 'sqlite') {
        const cli = await runCli(['rollout', 'status', plain.id, '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.doesNotMatch(cli.stdout, /warning/);
      }
      await abort(plain.id);
    });
  });
}
