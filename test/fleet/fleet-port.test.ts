import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { ServerContext } from '../../server/app/server-context.ts';
import { loadOrCreateServerKey } from '../../server/artifacts/server-signing-key.ts';
import { TokenService } from '../../server/auth/token-service.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { createFleet, type Fleet } from '../../server/fleet/fleet-module.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { Store } from '../../server/store/store.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { parseMessage } from '../../shared/protocol/parse-message.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, assignmentTopic, reportsTopic, statusTopic } from '../../shared/protocol/topics.ts';
import { createLogger } from '../../shared/util/log.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact } from '../server/helpers/artifacts.ts';

interface World {
  fleet: Fleet;
  store: Store;
}

/** The fleet module on its own (store, registry, embedded broker on an ephemeral port), as the rollout controller sees it. */
async function startFleet(t: TestContext): Promise<World> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-fleet-port-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const config = parseServerConfig({ dataDir, host: '127.0.0.1', mqttPort: 0 });
  const store = await openStore({ engine: 'sqlite', dataDir });
  t.after(() => store.close());
  const signingKey = await loadOrCreateServerKey(dataDir, async () => 0);
  const registry = new RegistryService(store);
  const ctx = {
    config,
    log: createLogger('test', 'silent'),
    store,
    registry,
    signingKey,
    metrics: new ServerMetrics(),
    tokens: new TokenService(store),
    publicUrl: () => 'http://127.0.0.1:9',
  } as unknown as ServerContext;
  const fleet = createFleet(ctx);
  await fleet.module.start!();
  t.after(() => fleet.module.stop!());
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signingKey.privateKey, version });
    await registry.register({ model: 'iris', manifest: artifact.manifest, actor: 'test' });
  }
  return { fleet, store };
}

/** A scripted device: online, and answers every assignment and fleet command the way the agent would. */
async function scriptedDevice(t: TestContext, config: AgentConfig): Promise<MqttClient> {
  const id = config.deviceId;
  const client = await connectClient(config.broker.url, { clientId: id, username: id, password: config.broker.password });
  t.after(() => client.endAsync(true));
  let n = 0;
  const answer = (fields: Pick<AssignmentReport, 'assignmentId' | 'outcome' | 'role' | 'model' | 'version' | 'sha256'>) => {
    const report: AssignmentReport = { schema: 1, id: `answer-${id}-${n++}`, kind: 'assignment', deviceId: id, createdAt: new Date().toISOString(), reason: null, ...fields };
    void client.publishAsync(reportsTopic(id), Buffer.from(JSON.stringify(report)), { qos: 1 });
  };
  client.on('message', (topic, payload) => {
    const parsed = parseMessage(topic, payload);
    if (!parsed.ok) return;
    const { message } = parsed;
    if (message.kind === 'assignment') {
      const a = message.payload;
      answer({ assignmentId: a.id, outcome: a.role === 'active' ? 'activated' : 'installed', role: a.role, model: a.model, version: a.version, sha256: a.sha256 });
    } else if (message.kind === 'commands' && message.payload.command === 'drop-candidate') {
      answer({ assignmentId: message.payload.id, outcome: 'candidate-dropped', role: 'candidate', model: 'iris', version: '2', sha256: '2'.repeat(64) });
    }
  });
  await client.subscribeAsync([assignmentTopic(id), FLEET_COMMANDS_TOPIC], { qos: 1 });
  await client.publishAsync(statusTopic(id), Buffer.from(JSON.stringify({ schema: 1, deviceId: id, online: true, since: new Date().toISOString() })), { qos: 1, retain: true });
  return client;
}

test('FleetPort: delivered for an online device, offline for an absent one, refused for an unknown one; repeats and reverts', async (t) => {
  const { fleet, store } = await startFleet(t);
  const online = await fleet.devices.enroll({ id: 'dev-a', labels: { site: 'osaka' } }, 'test');
  await fleet.devices.enroll({ id: 'dev-b', labels: { site: 'kyoto' } }, 'test');
  await scriptedDevice(t, online);
  await waitFor(async () => (await fleet.devices.get('dev-a')).online, 5000, 'dev-a online');

  assert.deepEqual(await fleet.fleetPort.listDevices('iris'), [
    { id: 'dev-a', labels: { site: 'osaka' }, baseline: null },
    { id: 'dev-b', labels: { site: 'kyoto' }, baseline: null },
  ]);
  const assign = { commandId: 'cmd-assign-0001', model: 'iris', version: '1', role: 'active' as const, deviceIds: ['dev-a', 'dev-b', 'nobody'] };
  assert.deepEqual(await fleet.fleetPort.assign(assign), [
    { deviceId: 'dev-a', outcome: 'delivered' },
    { deviceId: 'dev-b', outcome: 'offline' },
    { deviceId: 'nobody', outcome: 'refused', reason: 'not an enrolled device' },
  ]);
  // dev-a reported v1 active; dev-b is offline, but v1 is what it is meant to serve (its retained assignment).
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((device) => device.baseline), ['1', '1']);
  assert.deepEqual((await fleet.fleetPort.listDevices('other')).map((device) => device.baseline), [null, null]);
  // dev-b keeps the assignment retained, under the command's id.
  assert.equal((await fleet.devices.get('dev-b')).retainedAssignment?.id, 'cmd-assign-0001');

  // The same command again (a controller recovering after a crash): same results, nothing new recorded.
  const rows = await store.engine.all('SELECT * FROM device_assignments ORDER BY device_id');
  assert.deepEqual((await fleet.fleetPort.assign(assign)).map((result) => result.outcome), ['delivered', 'offline', 'refused']);
  assert.deepEqual(await store.engine.all('SELECT * FROM device_assignments ORDER BY device_id'), rows);

  const candidate = await fleet.fleetPort.assign({ commandId: 'cmd-assign-0002', model: 'iris', version: '2', role: 'candidate', deviceIds: ['dev-a'] });
  assert.deepEqual(candidate, [{ deviceId: 'dev-a', outcome: 'delivered' }]);
  assert.equal((await fleet.devices.get('dev-a')).candidate?.version, '2');

  // Revert: dev-a still serves its baseline, so it only drops the candidate; the retained assignment goes back to the baseline.
  const reverted = await fleet.fleetPort.revert({ commandId: 'cmd-revert-0003', model: 'iris', devices: [{ deviceId: 'dev-a', version: '1' }, { deviceId: 'dev-b', version: null }] });
  assert.deepEqual(reverted, [{ deviceId: 'dev-a', outcome: 'delivered' }, { deviceId: 'dev-b', outcome: 'offline' }]);
  const a = await fleet.devices.get('dev-a');
  assert.deepEqual([a.active?.version, a.candidate, a.retainedAssignment?.version, a.retainedAssignment?.role], ['1', null, '1', 'active']);
  await assert.rejects(fleet.fleetPort.assign({ commandId: 'cmd-assign-0004', model: 'iris', version: '9', role: 'active', deviceIds: ['dev-a'] }), /no version iris@9/);

  // dev-b last reported v2 active, then was sent back to v1 while offline: a new rollout's baseline
  // for it is v1, what it is meant to serve, not the version it was sent back from.
  await new FleetStore(store).repos.devices.setSlots('dev-b', { active: { model: 'iris', version: '2', sha256: '2'.repeat(64) }, candidate: null, previous: null }, new Date().toISOString());
  assert.deepEqual((await fleet.fleetPort.revert({ commandId: 'cmd-revert-0005', model: 'iris', devices: [{ deviceId: 'dev-b', version: '1' }] })).map((r) => r.outcome), ['offline']);
  assert.equal((await fleet.devices.get('dev-b')).active?.version, '2');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).find((device) => device.id === 'dev-b')?.baseline, '1');
});
