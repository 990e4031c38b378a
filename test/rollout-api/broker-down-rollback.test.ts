import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startServer, type RunningServer } from '../../server/app/start-server.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { createLogger } from '../../shared/util/log.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { freshStoreLocation, STORE_ENGINES } from '../server/helpers/store-engines.ts';
import { until } from '../helpers/until.ts';
import { activationTaken } from '../helpers/taken-activation.ts';
import { ADMIN_TOKEN, closeOnce, testServerOf, type TestServer } from '../server/helpers/test-server.ts';

/**
 * A server restarted (or elected) while its external Mosquitto is down leads, but cannot reach the
 * devices until the broker is back. A rollback is still accepted at once: decided and recorded, its
 * decision log saying the devices go back once the broker connects; and they do, when it does.
 */
for (const engine of STORE_ENGINES) {
  test(`external broker + ${engine}: a rollback during a broker outage after a restart is accepted at once, and reverts the devices once the broker is back`, async (t: TestContext) => {
    const binary = mosquittoBinary();
    if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
    const root = await mkdtemp(join(tmpdir(), 'fleetprune-broker-down-rollback-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const location = await freshStoreLocation(t, engine, join(root, 'data'));
    if (!location) return;
    const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, root);
    t.after(() => mosquitto.stop());
    const signer = await makeSigner(t);
    const config = parseServerConfig({
      dataDir: join(root, 'data'),
      host: '127.0.0.1',
      httpPort: 0,
      grpcPort: 0,
      adminToken: ADMIN_TOKEN,
      ...(location.engine === 'postgres' ? { databaseUrl: location.databaseUrl, databaseSchema: location.schema } : {}),
      mqttUrl: mosquitto.url,
      mqttPassword: password,
      mosquittoDir: mosquitto.authDir,
      mosquittoPidFile: pidFile,
      trustedKeys: [signer.publicKeyPath],
    });
    const start = async (name: string): Promise<TestServer> => {
      const server: RunningServer = await startServer(config, { log: createLogger(`broker-down-rollback-${name}`, 'silent'), leaderPollMs: 200, leaderStartWaitMs: 300 });
      closeOnce(server);
      t.after(() => server.close());
      return testServerOf(server, config.dataDir);
    };
    const retained = async (server: TestServer) => {
      const devices = await new FleetStore(server.server.ctx.store).repos.devices.getMany(['press-1', 'press-2']);
      return ['press-1', 'press-2'].map((id) => {
        const a = devices.get(id)?.retainedAssignment;
        return a ? `${a.role}:${a.version}:${a.id}` : 'none';
      });
    };

    // Before: two devices on iris 1 (offline: no agent runs), a rollout of iris 2 that gave them the candidate.
    const a = await start('a');
    await until('the broker taken over', async () => ((await a.request('GET', '/api/rollouts/leader')).ok ? true : undefined), 10_000);
    for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
      const artifact = await makeArtifact(t, { seed, privateKey: signer.privateKey, version });
      const pushed = await pushArtifact(a, 'iris', artifact.dir, artifact.manifest);
      assert.equal(pushed.status, 201, await pushed.clone().text());
    }
    for (const id of ['press-1', 'press-2']) {
      const enrolled = await until(`${id} enrolled`, async () => {
        const response = await a.request('POST', '/api/devices', { json: { id, labels: {} } });
        return response.status === 503 ? undefined : response;
      }, 20_000);
      assert.equal(enrolled.status, 201, await enrolled.clone().text());
    }
    const assigned = await a.request('POST', '/api/assignments', { json: { model: 'iris', version: '1', role: 'active', deviceIds: ['press-1', 'press-2'] } });
    assert.equal(assigned.status, 201, await assigned.clone().text());
    await activationTaken(a.server.ctx.store, ['press-1', 'press-2']);
    const started = await a.request('POST', '/api/rollouts', { json: { apiVersion: 'fleetprune/v1', kind: 'Rollout', model: 'iris', candidateVersion: '2', steps: [{ setWeight: 100 }, { pause: {} }] } });
    assert.equal(started.status, 201, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    await until('the candidate retained for both devices', async () => ((await retained(a)).every((r) => r.startsWith('candidate:2:')) ? true : undefined), 10_000);
    await a.server.close();

    // Mosquitto goes down (crashed: its files stay), and the server restarts meanwhile.
    await mosquitto.stop({ keepFiles: true });
    const b = await start('b');
    // The takeover itself (reading the rollouts back) takes a moment: a 503 is retried for a few seconds, not for the outage.
    let rollback = await b.request('POST', `/api/rollouts/${id}/rollback?reason=bad`);
    for (const deadline = Date.now() + 5000; rollback.status === 503 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      rollback = await b.request('POST', `/api/rollouts/${id}/rollback?reason=bad`);
    }
    assert.equal(rollback.status, 200, `a rollback during the broker outage is accepted: ${await rollback.clone().text()}`);
    assert.equal(((await rollback.json()) as { phase: string }).phase, 'RolledBack');
    const repository = new StoreRolloutRepository(b.server.ctx.store.engine);
    const decisions = await repository.decisions(id);
    const note = decisions.find((decision) => decision.verdict === 'waiting-for-broker');
    assert.ok(note, `the decision log says the devices wait for the broker: ${decisions.map((d) => `${d.kind}/${d.verdict}`).join(', ')}`);
    assert.match(note.message, /not connected to the external broker \(not yet, or it dropped\): the decision is recorded, and the devices are sent back to their baselines once it connects/);
    assert.deepEqual((await retained(b)).map((r) => r.split(':').slice(0, 2).join(':')), ['candidate:2', 'candidate:2'], 'nothing is sent (or recorded for the devices) before the broker is back');
    const again = await b.request('POST', `/api/rollouts/${id}/rollback`);
    assert.equal(again.status, 409, 'a second rollback finds the first one on its way');

    // The broker comes back: the server connects, and the devices are sent back to iris 1.
    await mosquitto.start();
    await writeFile(pidFile, `${mosquitto.pid}\n`);
    const back = await until('the revert retained for both devices', async () => {
      const now = await retained(b);
      return now.every((r) => r.startsWith('active:1:') && r.split(':')[2]!.startsWith(`${id}-`)) ? now : undefined;
    }, 30_000);
    assert.equal(back.length, 2);
    await until('the revert action done', async () => ((await repository.load(id))!.pendingActions.some((action) => action.kind === 'revert') ? undefined : true), 30_000);
    assert.equal((await repository.load(id))!.state.phase, 'RolledBack');
  });
}
