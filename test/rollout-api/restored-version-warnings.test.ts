import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { runCli } from '../server/helpers/run-cli.ts';
import { STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { registerVersion, stagedSpecYaml } from './helpers/rollout-fixtures.ts';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';

interface Decision {
  kind: string;
  verdict: string;
  message: string;
}

const FAILED_AT = '2026-01-02T03:04:05.000Z';
const WOULD_RESTORE = `wine@1 (the previous production and the baseline of 4 devices) is failed since ${FAILED_AT} (an earlier pilot failed); a rollback of this rollout would restore it`;
const RESTORES = `wine@1 (the previous production and the baseline of 4 devices) is failed since ${FAILED_AT} (an earlier pilot failed); this rollback restores it`;

for (const engine of STORE_ENGINES) {
  describe(`a rollback that restores a version a rollout failed, or one retired since (${engine})`, () => {
    test('the start warns that its rollback would restore it, and the rollback says it does (REST, gRPC, CLI, decision log); it is never refused', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
      t.after(() => grpc.close());
      const decisions = async (id: string) => ((await (await s.request('GET', `/api/rollouts/${id}`)).json()) as { decisions: Decision[] }).decisions;
      const settled = (id: string) => waitForRollout(s.request, id, (view) => view.pendingActions.length === 0);

      // No status on record for wine@1 (the devices' baseline and the production version): no warning either way.
      const quiet = (await s.request('POST', '/api/rollouts', { body: stagedSpecYaml(), contentType: 'application/yaml' }).then((r) => r.json())) as { id: string; warnings: string[] };
      assert.ok(!quiet.warnings.some((warning) => warning.includes('wine@1')), JSON.stringify(quiet.warnings));
      const quietRollback = await s.request('POST', `/api/rollouts/${quiet.id}/rollback`);
      assert.equal(quietRollback.status, 200);
      assert.deepEqual(((await quietRollback.json()) as { warnings: string[] }).warnings, []);
      await settled(quiet.id);

      // As when an operator put the production alias back on a version a rollout had failed.
      await new VersionStatusRepository(s.server.ctx.store.engine).record({ commandId: 'earlier-pilot', model: 'wine', version: '1', status: 'failed', reason: 'an earlier pilot failed', at: FAILED_AT });
      await registerVersion(s.server.ctx.store, 'wine', '3');

      const viaRest = (await s.request('POST', '/api/rollouts', { body: stagedSpecYaml({ version: '3' }), contentType: 'application/yaml' }).then((r) => r.json())) as { id: string; warnings: string[] };
      assert.equal(viaRest.warnings.at(-1), WOULD_RESTORE, JSON.stringify(viaRest.warnings));
      assert.ok((await decisions(viaRest.id)).some((d) => d.kind === 'warning' && d.message === WOULD_RESTORE), 'in the decision log with the start');
      const rolledBack = await s.request('POST', `/api/rollouts/${viaRest.id}/rollback`);
      assert.equal(rolledBack.status, 200, 'warned, not refused');
      const body = (await rolledBack.json()) as { phase: string; warnings: string[] };
      assert.equal(body.phase, 'RolledBack');
      assert.deepEqual(body.warnings, [RESTORES]);
      assert.deepEqual(
        (await decisions(viaRest.id)).filter((d) => d.kind === 'rollback').map((d) => [d.verdict, d.message]),
        [['rolled-back', (await decisions(viaRest.id)).find((d) => d.kind === 'rollback')!.message], ['warning', RESTORES]],
        'the rollback, then its warning',
      );
      await settled(viaRest.id);
      assert.deepEqual([...s.fleet.devices.values()].map((device) => device.active), ['1', '1', '1', '1'], 'the devices are back on it all the same');

      const viaGrpc = (await grpc.call('StartRollout', { spec: stagedSpecYaml({ version: '3' }) })) as { id: string; warnings: string[] };
      assert.equal(viaGrpc.warnings.at(-1), WOULD_RESTORE);
      if (engine === 'sqlite') {
        // The CLI prints the rollout's line on stdout (for scripts) and the warning on stderr.
        const cli = await runCli(['rollout', 'rollback', viaGrpc.id, '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.match(cli.stdout, new RegExp(`^${viaGrpc.id} .*RolledBack`));
        assert.equal(cli.stderr, `warning: ${RESTORES}\n`);
      } else {
        const rollback = (await grpc.call('RollbackRollout', { id: viaGrpc.id, reason: '' })) as { phase: string; warnings: string[] };
        assert.equal(rollback.phase, 'RolledBack');
        assert.deepEqual(rollback.warnings, [RESTORES]);
      }
      assert.ok((await decisions(viaGrpc.id)).some((d) => d.kind === 'rollback' && d.verdict === 'warning' && d.message === RESTORES));
    });

    test('a rollback of a promoted rollout whose previous production was retired since says that it restores it and un-retires it', async (t) => {
      const s = await startRolloutServer(t, { engine });
      if (!s) return;
      const settled = (id: string) => waitForRollout(s.request, id, (view) => view.pendingActions.length === 0);
      const started = (await s.request('POST', '/api/rollouts', { body: stagedSpecYaml(), contentType: 'application/yaml' }).then((r) => r.json())) as { id: string; warnings: string[] };
      assert.ok(!started.warnings.some((warning) => warning.includes('retired')), JSON.stringify(started.warnings));
      assert.equal((await s.request('POST', `/api/rollouts/${started.id}/promote`)).status, 200);
      await waitForRollout(s.request, started.id, (view) => view.phase === 'Completed' && view.pendingActions.length === 0);
      // wine@2 is production now: its predecessor is retired, as a registry is tidied after a promotion.
      const retire = await s.request('PATCH', '/api/models/wine/versions/1', { json: { retired: true } });
      assert.equal(retire.status, 200, await retire.text());
      // What the dashboard's Roll back confirmation says before the click: the registry now, not at the start.
      const before = (await (await s.request('GET', `/api/rollouts/${started.id}`)).json()) as { rollbackWarnings: string[] };
      assert.deepEqual(before.rollbackWarnings, ['wine@1 (the previous production and the baseline of 4 devices) is retired in the registry; this rollback restores it and un-retires it: it is production again']);

      const rolledBack = await s.request('POST', `/api/rollouts/${started.id}/rollback`);
      assert.equal(rolledBack.status, 200, 'warned, not refused');
      const retired = 'wine@1 (the previous production and the baseline of 4 devices) is retired in the registry; this rollback restores it and un-retires it: it is production again';
      assert.deepEqual(((await rolledBack.json()) as { warnings: string[] }).warnings, [retired]);
      await settled(started.id);
      const decisions = ((await (await s.request('GET', `/api/rollouts/${started.id}`)).json()) as { decisions: Decision[] }).decisions;
      assert.ok(decisions.some((d) => d.kind === 'rollback' && d.verdict === 'warning' && d.message === retired), 'in the decision log');
      const version = (await (await s.request('GET', '/api/models/wine/versions/1')).json()) as { retired: boolean; aliases: string[] };
      assert.deepEqual([version.retired, version.aliases], [false, ['production']], 'un-retired, and production again, as the warning says');
    });
  });
}
