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
import { createFleet, type Fleet, type FleetHooks } from '../../server/fleet/fleet-module.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { Store } from '../../server/store/store.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { parseMessage } from '../../shared/protocol/parse-message.ts';
import { assignmentSignatureVerifies, commandSignatureVerifies } from '../../shared/protocol/message-signature.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { FLEET_COMMANDS_TOPIC, assignmentTopic, reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { createLogger } from '../../shared/util/log.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { auditedDevices } from '../../server/fleet/assignment-publisher.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { ManualScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { ANSWER_BATCH_MS } from '../../server/rollout/answer-batcher.ts';
import { RolloutController } from '../../server/rollout/rollout-controller.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { ScriptedProvider } from '../analysis/scripted-provider.ts';
import { makeArtifact } from '../server/helpers/artifacts.ts';
import { BlobStore } from '../../server/artifacts/blob-store.ts';
import { storeArtifactFiles } from '../../server/artifacts/store-artifact-files.ts';

interface World {
  fleet: Fleet;
  store: Store;
  signingKey: Awaited<ReturnType<typeof loadOrCreateServerKey>>;
}

/** The fleet module on its own (store, registry, embedded broker on an ephemeral port), as the rollout controller sees it. */
async function startFleet(
  t: TestContext,
  options: { wrapRegistry?: (registry: RegistryService) => RegistryService; beforeStart?: (store: Store) => Promise<void>; hooks?: FleetHooks; deliveryTimeoutMs?: number } = {},
): Promise<World & { metrics: ServerMetrics }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-fleet-port-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const config = parseServerConfig({ dataDir, host: '127.0.0.1', mqttPort: 0 });
  const store = await openStore({ engine: 'sqlite', dataDir });
  t.after(() => store.close());
  const signingKey = await loadOrCreateServerKey(dataDir, async () => 0);
  const registry = new RegistryService(store);
  const blobs = new BlobStore(join(dataDir, 'blobs'));
  await blobs.open();
  const ctx = {
    config,
    blobs,
    log: createLogger('test', 'silent'),
    store,
    registry: options.wrapRegistry?.(registry) ?? registry,
    signingKey,
    metrics: new ServerMetrics(),
    tokens: new TokenService(store),
    publicUrl: () => 'http://127.0.0.1:9',
  } as unknown as ServerContext;
  await options.beforeStart?.(store);
  const fleet = createFleet(ctx, options.hooks, undefined, options.deliveryTimeoutMs !== undefined ? { deliveryTimeoutMs: options.deliveryTimeoutMs } : {});
  await fleet.module.start!();
  t.after(() => fleet.module.stop!());
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signingKey.privateKey, version });
    // As a push stores them: an assignment of a version whose model.onnx the server lacks is refused.
    await storeArtifactFiles(artifact.dir, artifact.manifest, blobs);
    await registry.register({ model: 'iris', manifest: artifact.manifest, actor: 'test' });
  }
  return { fleet, store, signingKey, metrics: ctx.metrics };
}

/** The real rollout controller over this fleet and store (no analysis; a manual clock for retries). */
function startController(t: TestContext, { fleet, store }: Pick<World, 'fleet' | 'store'>, rolloutId: string) {
  const scheduler = new ManualScheduler(Date.now());
  const controller = new RolloutController({
    repository: new StoreRolloutRepository(store.engine),
    fleet: fleet.fleetPort,
    models: new RegistryModelStatus(store),
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider([[1]]) }),
    scheduler,
    actionRetryMs: 1000,
    newId: () => rolloutId,
  });
  t.after(() => controller.stop());
  return { controller, scheduler };
}

/** A scripted device: online, and answers every assignment and fleet command the way the agent would. */
/** `muted.value`: the device is frozen; what it would answer waits in `muted.held` until the test sends it. */
interface Muted {
  value: boolean;
  held?: (() => void)[];
}

let scriptedSessions = 0;

async function scriptedDevice(t: TestContext, config: AgentConfig, options: { refuses?: (version: string) => boolean; muted?: Muted; /** Its active model is the candidate (an activation raced the rollback): a drop finds no candidate. */ runsCandidate?: () => boolean; /** Gets `role:version` of each assignment received, in order. */ received?: string[] } = {}): Promise<MqttClient> {
  const id = config.deviceId;
  const client = await connectClient(config.broker.url, { clientId: id, username: id, password: config.broker.password });
  t.after(() => client.endAsync(true));
  let n = 0;
  // Report ids are unique per device: the server drops a repeat, as of a device that reconnected.
  const session = (scriptedSessions++).toString(36);
  const answer = (fields: Pick<AssignmentReport, 'assignmentId' | 'outcome' | 'role' | 'model' | 'version' | 'sha256'> & { reason?: string }) => {
    if (options.muted?.value) {
      options.muted.held?.push(() => answer(fields));
      return;
    }
    const report: AssignmentReport = { schema: 1, id: `answer-${id}-${session}-${n++}`, kind: 'assignment', deviceId: id, createdAt: new Date().toISOString(), ...fields, reason: fields.reason ?? null };
    // An answer still in flight when the test ends its client is dropped, not an unhandled rejection.
    client.publishAsync(reportsTopic(id), Buffer.from(JSON.stringify(report)), { qos: 1 }).catch(() => {});
  };
  client.on('message', (topic, payload) => {
    const parsed = parseMessage(topic, payload);
    if (!parsed.ok) return;
    const { message } = parsed;
    if (message.kind === 'assignment') {
      const a = message.payload;
      options.received?.push(`${a.role}:${a.version}`);
      const outcome = options.refuses?.(a.version) ? 'refused' : a.role === 'active' ? 'activated' : 'installed';
      answer({ assignmentId: a.id, outcome, role: a.role, model: a.model, version: a.version, sha256: a.sha256 });
    } else if (message.kind === 'commands' && message.payload.command === 'drop-candidate') {
      if (options.runsCandidate?.()) answer({ assignmentId: message.payload.id, outcome: 'refused', reason: 'no candidate to drop', role: 'candidate', model: 'iris', version: '2', sha256: '2'.repeat(64) });
      else answer({ assignmentId: message.payload.id, outcome: 'candidate-dropped', role: 'candidate', model: 'iris', version: '2', sha256: '2'.repeat(64) });
    }
  });
  await client.subscribeAsync([assignmentTopic(id), FLEET_COMMANDS_TOPIC], { qos: 1 });
  await client.publishAsync(statusTopic(id), Buffer.from(JSON.stringify({ schema: 1, deviceId: id, online: true, since: new Date().toISOString() })), { qos: 1, retain: true });
  return client;
}

test('FleetPort: delivered for an online device, offline for an absent one, gone for an unknown one; repeats and reverts', async (t) => {
  const { fleet, store, signingKey } = await startFleet(t);
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
    { deviceId: 'nobody', outcome: 'gone', reason: 'not an enrolled device' },
  ]);
  // dev-a reported v1 active; dev-b is offline, but v1 is what it is meant to serve (its retained assignment).
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((device) => device.baseline), ['1', '1']);
  assert.deepEqual((await fleet.fleetPort.listDevices('other')).map((device) => device.baseline), [null, null]);
  // dev-b keeps the assignment retained, under the command's id; an activation, not a revert.
  assert.equal((await fleet.devices.get('dev-b')).retainedAssignment?.id, 'cmd-assign-0001');
  assert.equal((await fleet.devices.get('dev-b')).retainedAssignment?.revert, undefined);

  // The same command again (a controller recovering after a crash): same results, nothing new recorded.
  const rows = await store.engine.all('SELECT * FROM device_assignments ORDER BY device_id');
  assert.deepEqual((await fleet.fleetPort.assign(assign)).map((result) => result.outcome), ['delivered', 'offline', 'gone']);
  assert.deepEqual(await store.engine.all('SELECT * FROM device_assignments ORDER BY device_id'), rows);

  const candidate = await fleet.fleetPort.assign({ commandId: 'cmd-assign-0002', model: 'iris', version: '2', role: 'candidate', deviceIds: ['dev-a'] });
  assert.deepEqual(candidate, [{ deviceId: 'dev-a', outcome: 'delivered' }]);
  assert.equal((await fleet.devices.get('dev-a')).candidate?.version, '2');

  // Revert: dev-a still serves its baseline, so it only drops the candidate; the retained assignment goes back to the baseline.
  const reverted = await fleet.fleetPort.revert({ commandId: 'cmd-revert-0003', model: 'iris', devices: [{ deviceId: 'dev-a', version: '1' }, { deviceId: 'dev-b', version: null }] });
  assert.deepEqual(reverted, [{ deviceId: 'dev-a', outcome: 'delivered' }, { deviceId: 'dev-b', outcome: 'offline' }]);
  const a = await fleet.devices.get('dev-a');
  assert.deepEqual([a.active?.version, a.candidate, a.retainedAssignment?.version, a.retainedAssignment?.role], ['1', null, '1', 'active']);
  // It says it is a revert (the agent answers rolled-back when it takes it from its previous slot), under the signature.
  assert.equal(a.retainedAssignment?.revert, true);
  assert.equal(assignmentSignatureVerifies('dev-a', a.retainedAssignment, signingKey.publicKey), true);
  await assert.rejects(fleet.fleetPort.assign({ commandId: 'cmd-assign-0004', model: 'iris', version: '9', role: 'active', deviceIds: ['dev-a'] }), /no version iris@9/);

  // dev-b last reported v2 active, then was sent back to v1 while offline: a new rollout's baseline
  // for it is v1, what it is meant to serve, not the version it was sent back from.
  await new FleetStore(store).repos.devices.setSlots('dev-b', { active: { model: 'iris', version: '2', sha256: '2'.repeat(64) }, candidate: null, previous: null }, new Date().toISOString());
  assert.deepEqual((await fleet.fleetPort.revert({ commandId: 'cmd-revert-0005', model: 'iris', devices: [{ deviceId: 'dev-b', version: '1' }] })).map((r) => r.outcome), ['offline']);
  assert.equal((await fleet.devices.get('dev-b')).active?.version, '2');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).find((device) => device.id === 'dev-b')?.baseline, '1');
});

test('what the server tells devices is signed for each device and numbered from the store: a repeat keeps its number, commands have their own', async (t) => {
  const { fleet, store, signingKey } = await startFleet(t);
  await fleet.devices.enroll({ id: 'dev-s1', labels: {} }, 'test');
  const s2 = await fleet.devices.enroll({ id: 'dev-s2', labels: {} }, 'test');
  const retained = async (id: string) => (await fleet.devices.get(id)).retainedAssignment!;
  await fleet.fleetPort.assign({ commandId: 'cmd-sign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-s1', 'dev-s2'] });
  const [a1, b1] = [await retained('dev-s1'), await retained('dev-s2')];
  assert.equal(a1.seq, b1.seq, 'one number per request');
  assert.ok(assignmentSignatureVerifies('dev-s1', a1, signingKey.publicKey));
  assert.ok(assignmentSignatureVerifies('dev-s2', b1, signingKey.publicKey));
  assert.equal(assignmentSignatureVerifies('dev-s2', a1, signingKey.publicKey), false, "dev-s1's assignment is not dev-s2's");
  await fleet.fleetPort.assign({ commandId: 'cmd-sign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-s1'] });
  assert.deepEqual(await retained('dev-s1'), a1, 'the same command again: the same signed payload');
  // And one audit entry: recorded again (a new leader re-running a pending action), it changed nothing.
  const audited = async (id: string) => (await store.engine.all('SELECT details FROM audit_log')).filter((row: any) => JSON.parse(row.details).assignmentId === id).length;
  assert.equal(await audited('cmd-sign-0001'), 1);
  await fleet.fleetPort.assign({ commandId: 'cmd-sign-0002', model: 'iris', version: '2', role: 'active', deviceIds: ['dev-s1'] });
  const a2 = await retained('dev-s1');
  assert.ok(a2.seq > a1.seq);
  assert.equal(await audited('cmd-sign-0002'), 1);
  // A retained assignment recorded before signing existed is signed (numbered 0) when sent.
  const legacy: Record<string, unknown> = { ...b1 };
  delete legacy.seq;
  delete legacy.signature;
  await store.engine.run('UPDATE devices SET retained_assignment = ? WHERE id = ?', [JSON.stringify(legacy), 'dev-s2']);
  const device = await connectClient(s2.broker.url, { clientId: 'dev-s2', username: 'dev-s2', password: s2.broker.password });
  t.after(() => device.endAsync(true));
  const received: Record<string, unknown>[] = [];
  device.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString())));
  await device.subscribeAsync(assignmentTopic('dev-s2'), { qos: 1 });
  await fleet.fleetPort.assign({ commandId: 'cmd-sign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-s2'] });
  await waitFor(() => received.some((payload) => payload.seq === 0), 5000, 'the legacy assignment re-sent');
  const resigned = received.find((payload) => payload.seq === 0)!;
  assert.equal(resigned.id, 'cmd-sign-0001');
  assert.ok(assignmentSignatureVerifies('dev-s2', resigned, signingKey.publicKey));
});

test("a server that starts exports each live device's latest benchmark again, as far as the device still holds the models", async (t) => {
  const ref = (version: string) => ({ model: 'iris', version, sha256: version.repeat(64) });
  const side = <R extends 'active' | 'candidate'>(version: string, role: R) => ({
    ...ref(version), role, score: { accuracy: 0.9, correct: 27, total: 30 }, latencyMs: { p50: 0.1, p95: 0.2, p99: 0.3, samples: 50 },
    batchSize: 64, throughputRowsPerSecond: 1000, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  const { metrics } = await startFleet(t, {
    beforeStart: async (store) => {
      const fleet = new FleetStore(store);
      for (const [id, candidate] of [['kept-1', ref('2')], ['dropped-1', null]] as const) {
        await fleet.repos.devices.insert({ id, labels: { cohort: 'pilot' }, secretHash: 'x', tokenId: 'tok', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'test' });
        await fleet.repos.devices.setSlots(id, { active: ref('1'), candidate, previous: null }, '2026-03-01T09:00:00.000Z');
        const report = { schema: 1 as const, id: `bench-${id}`, kind: 'benchmark' as const, deviceId: id, createdAt: '2026-03-01T09:00:00.000Z', assignmentId: null, holdout: { rows: 30, fingerprint: 'f', task: 'classification' as const }, active: side('1', 'active'), candidate: side('2', 'candidate') };
        await fleet.repos.reports.insert(report, 'pilot', '2026-03-01T09:00:01.000Z');
      }
    },
  });
  const text = await metrics.registry.metrics();
  const label = (line: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1];
  const series = text
    .split('\n')
    .filter((line) => line.startsWith('fleetprune_device_accuracy_ratio{'))
    .map((line) => `${label(line, 'device')} ${label(line, 'role')} ${label(line, 'version')}`)
    .sort();
  // dropped-1 no longer holds the candidate it benchmarked: only its active series comes back.
  assert.deepEqual(series, ['dropped-1 active 1', 'kept-1 active 1', 'kept-1 candidate 2'], text);
});

test('a device that refused its active assignment keeps what it reported active as its baseline: a rollback never sends it back to a version it cannot run', async (t) => {
  const { fleet, store } = await startFleet(t);
  const device = await fleet.devices.enroll({ id: 'dev-r', labels: {} }, 'test');
  await scriptedDevice(t, device, { refuses: (version) => version === '2' });
  await waitFor(async () => (await fleet.devices.get('dev-r')).online, 5000, 'dev-r online');

  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'cmd-assign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-r'] })).map((r) => r.outcome), ['delivered']);
  const refused = await fleet.fleetPort.assign({ commandId: 'cmd-assign-0002', model: 'iris', version: '2', role: 'active', deviceIds: ['dev-r'] });
  assert.deepEqual(refused.map((r) => r.outcome), ['refused']);
  const stored = await fleet.devices.get('dev-r');
  // The refused assignment stays retained (the device has handled it), but the device still runs v1.
  assert.deepEqual([stored.retainedAssignment?.version, stored.active?.version], ['2', '1']);
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1']);
  // Report retention deletes the answer itself in time; the assignment's record, kept while it is
  // retained, still says refused.
  const { repos } = new FleetStore(store);
  const later = new Date(Date.now() + 365 * 86_400_000);
  assert.ok((await repos.reports.deleteReceivedBefore(later)) >= 2, 'the answers are swept');
  await repos.assignments.deleteAnsweredBefore(later);
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1'], 'still v1 once the answers are swept');
});

test('a device that took a newer assignment than the store retains (the store restored from an older backup) has what it reports active as its baseline, not the retained version', async (t) => {
  const { fleet, store } = await startFleet(t);
  const device = await fleet.devices.enroll({ id: 'dev-b', labels: {} }, 'test');
  const client = await scriptedDevice(t, device);
  await waitFor(async () => (await fleet.devices.get('dev-b')).online, 5000, 'dev-b online');
  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'cmd-assign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-b'] })).map((r) => r.outcome), ['delivered']);
  const retained = (await fleet.devices.get('dev-b')).retainedAssignment!;
  assert.equal(typeof retained.seq, 'number');
  // What the device runs since, by an assignment of a server whose store was then restored to a
  // backup taken before it: iris@2, the registered artifact.
  const active = { model: 'iris', version: '2', sha256: (await store.models.getVersion('iris', '2'))!.artifactId };
  let sent = Date.now();
  const heartbeat = async (assignmentSeq?: number) => {
    sent += 2000;
    const body = { schema: 1, deviceId: 'dev-b', sentAt: new Date(sent).toISOString(), uptimeSeconds: 1, cpuPercent: 1, rssBytes: 1, active, candidate: null, previous: null, ...(assignmentSeq === undefined ? {} : { assignmentSeq }) };
    await client.publishAsync(telemetryTopic('dev-b'), Buffer.from(JSON.stringify(body)), { qos: 1 });
    await waitFor(async () => (await fleet.devices.get('dev-b')).heartbeat?.at === new Date(sent).toISOString(), 5000, 'the heartbeat stored');
  };
  // Not said (an older agent): the retained assignment is the baseline, as for a device that was
  // offline when a rollback sent it back and still reports the version it was sent back from.
  await heartbeat();
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1']);
  // The retained assignment is the newest the device took: still the baseline.
  await heartbeat(retained.seq);
  assert.equal((await fleet.devices.get('dev-b')).heartbeat?.assignmentSeq, retained.seq, 'the number is stored with the heartbeat');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1']);
  // A number no server has sent (above the counter and the clock): not believed, whatever the
  // device claims (its own baseline would decide what a rollback sends it, and lets it download).
  await heartbeat(Number.MAX_SAFE_INTEGER);
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1']);
  // A newer one taken: the device refuses the retained one as a replay, and runs iris@2.
  await heartbeat(retained.seq! + 1);
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['2']);
});

test('a device that reports active a version the registry does not hold has no baseline: a rollout leaves it out instead of failing for ever to send it back there', async (t) => {
  const { fleet, store } = await startFleet(t);
  const device = await fleet.devices.enroll({ id: 'dev-x', labels: {} }, 'test');
  const client = await scriptedDevice(t, device);
  await waitFor(async () => (await fleet.devices.get('dev-x')).online, 5000, 'dev-x online');
  // Any enrolled device can say so in its heartbeat (a broken or hostile one); the server never sent it iris@999.
  const heartbeat = { schema: 1, deviceId: 'dev-x', sentAt: new Date().toISOString(), uptimeSeconds: 1, cpuPercent: 1, rssBytes: 1, active: { model: 'iris', version: '999', sha256: 'a'.repeat(64) }, candidate: null, previous: null };
  await client.publishAsync(telemetryTopic('dev-x'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  await waitFor(async () => (await fleet.devices.get('dev-x')).active?.version === '999', 5000, 'the heartbeat stored');
  // As a baseline it would make every revert fail (no version iris@999), and the model's next rollout wait on that revert.
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), [null]);
  // An alias or `latest` reported as a version is no baseline either: it names no version the device holds.
  await client.publishAsync(telemetryTopic('dev-x'), Buffer.from(JSON.stringify({ ...heartbeat, sentAt: new Date(Date.now() + 2000).toISOString(), active: { ...heartbeat.active, version: 'latest' } })), { qos: 1 });
  await waitFor(async () => (await fleet.devices.get('dev-x')).active?.version === 'latest', 5000, 'the second heartbeat stored');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), [null]);
  // Nor is a registered version's name on another artifact (kept from a registry since reset, or
  // forged): the device does not run iris@1, and a rollback of iris@1 must not count it as running it.
  const registered = (await store.models.getVersion('iris', '1'))!.artifactId;
  await client.publishAsync(telemetryTopic('dev-x'), Buffer.from(JSON.stringify({ ...heartbeat, sentAt: new Date(Date.now() + 4000).toISOString(), active: { model: 'iris', version: '1', sha256: 'b'.repeat(64) } })), { qos: 1 });
  await waitFor(async () => (await fleet.devices.get('dev-x')).active?.version === '1', 5000, 'the third heartbeat stored');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), [null]);
  // The same version with its registered artifact is the device's baseline.
  await client.publishAsync(telemetryTopic('dev-x'), Buffer.from(JSON.stringify({ ...heartbeat, sentAt: new Date(Date.now() + 6000).toISOString(), active: { model: 'iris', version: '1', sha256: registered } })), { qos: 1 });
  await waitFor(async () => (await fleet.devices.get('dev-x')).active?.sha256 === registered, 5000, 'the fourth heartbeat stored');
  assert.deepEqual((await fleet.fleetPort.listDevices('iris')).map((d) => d.baseline), ['1']);
});

test('a rollback sends a device whose active model was lost before it installed the candidate (active none, candidate the rollout\'s) its baseline and drops its candidate too: it ends with no candidate', async (t) => {
  const { fleet, store } = await startFleet(t);
  const device = await fleet.devices.enroll({ id: 'dev-l', labels: {} }, 'test');
  const client = await scriptedDevice(t, device);
  await waitFor(async () => (await fleet.devices.get('dev-l')).online, 5000, 'dev-l online');
  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'lost-assign-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-l'] })).map((r) => r.outcome), ['delivered']);
  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'lost-assign-0002', model: 'iris', version: '2', role: 'candidate', deviceIds: ['dev-l'] })).map((r) => r.outcome), ['delivered']);
  // Its active model failed verification at a restart and was dropped from its slot; the candidate stayed.
  const candidate = (await fleet.devices.get('dev-l')).candidate!;
  assert.equal(candidate.version, '2');
  const heartbeat = { schema: 1, deviceId: 'dev-l', sentAt: new Date().toISOString(), uptimeSeconds: 1, cpuPercent: 1, rssBytes: 1, intervalSeconds: 30, active: null, candidate, previous: null };
  await client.publishAsync(telemetryTopic('dev-l'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  await waitFor(async () => (await fleet.devices.get('dev-l')).active === null, 5000, 'the heartbeat without an active model stored');

  const reverted = await fleet.fleetPort.revert({ commandId: 'lost-revert-0001', model: 'iris', devices: [{ deviceId: 'dev-l', version: '1' }] });
  assert.deepEqual(reverted.map((r) => r.outcome), ['delivered']);
  // Sent its baseline as active (the awaited answer) and a drop of the candidate under a derived id.
  const commands = await store.engine.all('SELECT id FROM fleet_commands WHERE device_id = ? ORDER BY id', ['dev-l']);
  assert.deepEqual(commands.map((row) => row.id), ['lost-revert-0001-drop']);
  await waitFor(async () => {
    const after = await fleet.devices.get('dev-l');
    return after.active?.version === '1' && after.candidate === null;
  }, 5000, 'dev-l back on iris@1 with no candidate');
});

test('a rollback while the activation is still on its way: every device ends on its baseline (table, and the last message it got); the late activation records and sends nothing', async (t) => {
  // The activation's registry lookup of v2 is held until the rollback has been carried out.
  let release!: () => void;
  let holding = false;
  const held = new Promise<void>((resolve) => (release = resolve));
  const { fleet, store } = await startFleet(t, {
    wrapRegistry: (registry) =>
      Object.assign(Object.create(registry) as RegistryService, {
        resolve: async (model: string, version: string) => {
          if (holding && version === '2') await held;
          return registry.resolve(model, version);
        },
      }),
  });
  const ids = ['race-1', 'race-2', 'race-3'];
  const lastReceived = new Map<string, string>();
  for (const id of ids) {
    const client = await scriptedDevice(t, await fleet.devices.enroll({ id, labels: { site: 'north' } }, 'test'));
    client.on('message', (topic, payload) => {
      const parsed = parseMessage(topic, payload);
      if (parsed.ok && parsed.message.kind === 'assignment') lastReceived.set(id, `${parsed.message.payload.role}:${parsed.message.payload.version}`);
    });
    await waitFor(async () => (await fleet.devices.get(id)).online, 5000, `${id} online`);
  }
  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'race-baseline-0001', model: 'iris', version: '1', role: 'active', deviceIds: ids })).map((r) => r.outcome), ['delivered', 'delivered', 'delivered']);

  const { controller, scheduler } = startController(t, { fleet, store }, 'ro-race');
  const spec = validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 50 }, { pause: {} }] });
  await controller.start(spec, { by: 'alice' });
  await controller.idle();
  holding = true;
  await controller.promote('ro-race', 'alice', { full: true }); // the activation: v2 active on every device, held at its lookup
  await controller.rollback('ro-race', 'operator', 'bad candidate');
  await waitFor(async () => (await controller.status('ro-race')).devices.every((d) => d.desired === 'baseline' && d.delivery === 'delivered'), 10_000, 'the revert carried out');
  await waitFor(() => ids.every((id) => lastReceived.get(id) === 'active:1'), 5000, 'every device got its baseline');
  release();
  await scheduler.advance(1000);
  await controller.idle();
  await new Promise((resolve) => setTimeout(resolve, 300)); // anything the late activation sent would have arrived by now

  const final = await controller.status('ro-race');
  assert.equal(final.phase, 'RolledBack');
  for (const id of ids) {
    const device = await fleet.devices.get(id);
    assert.deepEqual([device.retainedAssignment?.role, device.retainedAssignment?.version], ['active', '1'], `${id}: the table holds its baseline`);
    assert.equal(lastReceived.get(id), 'active:1', `${id}: the last assignment it got is its baseline`);
  }
});

/** Enrolled, online scripted devices on iris v1; `silent` stops answering once the baseline is in (or when the test says). */
async function fleetOnBaseline(t: TestContext, world: Pick<World, 'fleet'>, ids: readonly string[], options: { silent: string; refuses?: string; muteLater?: boolean }): Promise<Muted> {
  const muted: Muted = { value: false, held: [] };
  for (const id of ids) {
    const config = await world.fleet.devices.enroll({ id, labels: { site: 'north' } }, 'test');
    await scriptedDevice(t, config, { ...(id === options.silent ? { muted } : {}), ...(id === options.refuses ? { refuses: (version: string) => version === '2' } : {}) });
    await waitFor(async () => (await world.fleet.devices.get(id)).online, 5000, `${id} online`);
  }
  const baseline = await world.fleet.fleetPort.assign({ commandId: `${ids[0]}-baseline-0001`, model: 'iris', version: '1', role: 'active', deviceIds: ids });
  assert.deepEqual(baseline.map((r) => r.outcome), ids.map(() => 'delivered'));
  muted.value = !options.muteLater;
  return muted;
}

test('a device action records the devices that answered while it still waits for a silent one (30 s), not only when the wait is over', async (t) => {
  const world = await startFleet(t);
  const ids = ['prog-1', 'prog-2', 'prog-3'];
  await fleetOnBaseline(t, world, ids, { silent: 'prog-3' });
  const { controller, scheduler } = startController(t, world, 'ro-progress');
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  const deliveries = async () => (await controller.status('ro-progress')).devices.map((device) => `${device.id}:${device.delivery}`).sort().join(' ');
  // The answers gather for ANSWER_BATCH_MS on the controller's clock, then are recorded together.
  await waitFor(async () => {
    await scheduler.advance(ANSWER_BATCH_MS);
    return (await deliveries()) === 'prog-1:delivered prog-2:delivered prog-3:pending';
  }, 5000, 'the two answers recorded while prog-3 is awaited');
  assert.equal((await controller.status('ro-progress')).phase, 'Progressing');
  const decisions = await controller.decisions('ro-progress');
  assert.equal(decisions.filter((decision) => decision.kind === 'step' && decision.verdict === 'completed').length, 0, 'the step waits for prog-3');
});

test('a device that refuses the candidate fails the rollout at once, without waiting for a silent device of the same step', async (t) => {
  const world = await startFleet(t);
  const ids = ['refu-1', 'refu-2', 'refu-3'];
  await fleetOnBaseline(t, world, ids, { silent: 'refu-3', refuses: 'refu-1' });
  const { controller, scheduler } = startController(t, world, 'ro-refused');
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  await waitFor(async () => {
    await scheduler.advance(ANSWER_BATCH_MS);
    return (await controller.status('ro-refused')).phase === 'Failed';
  }, 5000, 'the rollout failed on the refusal');
  const state = await controller.status('ro-refused');
  assert.match(state.outcome?.reason ?? '', /device refu-1 refused the candidate/);
  assert.deepEqual(state.devices.map((device) => device.desired), ['baseline', 'baseline', 'baseline']);
});

test('a device that answers a rollback late (frozen past the delivery timeout, never offline) is counted as back on its baseline, not unreachable', async (t) => {
  let controller: RolloutController | undefined;
  const world = await startFleet(t, {
    deliveryTimeoutMs: 500,
    hooks: { onAnswer: (deviceId, actionId, result) => void controller?.deviceAnswered(deviceId, actionId, result) },
  });
  const ids = ['late-1', 'late-2'];
  const frozen = await fleetOnBaseline(t, world, ids, { silent: 'late-2', muteLater: true });
  const started = startController(t, world, 'ro-late');
  controller = started.controller;
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  await controller.idle();
  assert.deepEqual((await controller.status('ro-late')).devices.map((device) => device.delivery), ['delivered', 'delivered']);

  // late-2 freezes (its connection stays up), the rollback reaches it, and its 500 ms pass.
  frozen.value = true;
  await controller.rollback('ro-late', 'operator', 'bad candidate');
  await controller.idle();
  const counted = async () => (await controller!.status('ro-late')).devices.map((device) => `${device.id}:${device.delivery}`).sort().join(' ');
  assert.equal(await counted(), 'late-1:delivered late-2:retrying');
  assert.ok(frozen.held!.length > 0, 'late-2 got the rollback while frozen');

  // It thaws and answers what it was sent: the rollout counts it back on its baseline at once.
  frozen.value = false;
  for (const send of frozen.held!.splice(0)) send();
  await waitFor(async () => {
    await started.scheduler.advance(ANSWER_BATCH_MS); // late answers gather for ANSWER_BATCH_MS on the controller's clock
    return (await counted()) === 'late-1:delivered late-2:delivered';
  }, 5000, 'the late answer recorded');
  const decisions = await controller.decisions('ro-late');
  assert.ok(decisions.some((decision) => decision.kind === 'device' && decision.verdict === 'delivered' && /device late-2 answered late .*: it has its baseline/.test(decision.message)), JSON.stringify(decisions.map((d) => d.message)));
  // An answer to an older action (the candidate assignment, answered again) changes nothing.
  await controller.deviceAnswered('late-1', 'ro-late-a1', { outcome: 'refused', reason: 'stale' });
  await started.scheduler.advance(ANSWER_BATCH_MS);
  await controller.idle();
  assert.equal(await counted(), 'late-1:delivered late-2:delivered');
});

test('a rollback of a rollout restored from an older backup leaves alone a device that took a newer assignment than the store holds (it runs what a later assignment gave it)', async (t) => {
  const world = await startFleet(t);
  const received: string[] = [];
  const config = await world.fleet.devices.enroll({ id: 'moved-1', labels: { site: 'north' } }, 'test');
  const client = await scriptedDevice(t, config, { received });
  await waitFor(async () => (await world.fleet.devices.get('moved-1')).online, 5000, 'moved-1 online');
  await world.fleet.fleetPort.assign({ commandId: 'moved-baseline-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['moved-1'] });
  const { controller } = startController(t, world, 'ro-moved');
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  await controller.idle();
  const retained = (await world.fleet.devices.get('moved-1')).retainedAssignment!;
  assert.equal(retained.version, '2', "the rollout's activation is what the store retains");
  // Since the backup this store stands for, the device was given iris@1 again by an assignment
  // the store never saw (numbered after the rollout's), and says so in its heartbeat.
  const active = { model: 'iris', version: '1', sha256: (await world.store.models.getVersion('iris', '1'))!.artifactId };
  const heartbeat = { schema: 1, deviceId: 'moved-1', sentAt: new Date(Date.now() + 1000).toISOString(), uptimeSeconds: 1, cpuPercent: 1, rssBytes: 1, active, candidate: null, previous: null, assignmentSeq: retained.seq! + 1 };
  await client.publishAsync(telemetryTopic('moved-1'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  await waitFor(async () => (await world.fleet.devices.get('moved-1')).heartbeat?.assignmentSeq === retained.seq! + 1, 5000, 'the heartbeat stored');
  assert.equal((await world.fleet.fleetPort.retainedAssignments!(['moved-1'])).get('moved-1')?.outdated, true);

  const sent = received.length;
  await controller.rollback('ro-moved', 'operator', 'bad candidate');
  await controller.idle();
  assert.deepEqual(received.slice(sent), [], 'no revert sent: the device is no longer the rollout\'s');
  assert.equal((await world.fleet.devices.get('moved-1')).retainedAssignment?.id, retained.id, 'nothing recorded for it');

  // A rollout started since sends it its candidate all the same: the device is no one else's (a
  // claimed newer number must not fail every rollout that targets the device).
  const next = startController(t, world, 'ro-after');
  await next.controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  await next.controller.idle();
  const after = await next.controller.status('ro-after');
  assert.notEqual(after.phase, 'Failed', JSON.stringify(after.devices));
  assert.deepEqual(after.devices.map((device) => device.delivery), ['delivered']);
  assert.ok(received.slice(sent).length > 0, 'the new rollout sent the device its candidate');
});

test('late answers to a rollback that raced an activation: "no candidate to drop" from a device running the candidate is not "back"; the answer to its retained baseline decides', async (t) => {
  let controller: RolloutController | undefined;
  const world = await startFleet(t, {
    deliveryTimeoutMs: 500,
    hooks: { onAnswer: (deviceId, actionId, result) => void controller?.deviceAnswered(deviceId, actionId, result) },
  });
  // race-2 and race-3 will freeze, and run the candidate by the time they thaw; race-2's copy of
  // the baseline is gone by then, so it refuses the baseline retained for it.
  const frozen: Muted = { value: false, held: [] };
  let raced = false;
  const ids = ['race-1', 'race-2', 'race-3'];
  for (const id of ids) {
    const config = await world.fleet.devices.enroll({ id, labels: { site: 'north' } }, 'test');
    const racing = id !== 'race-1';
    await scriptedDevice(t, config, racing ? { muted: frozen, runsCandidate: () => raced, refuses: (version) => raced && id === 'race-2' && version === '1' } : {});
    await waitFor(async () => (await world.fleet.devices.get(id)).online, 5000, `${id} online`);
  }
  await world.fleet.fleetPort.assign({ commandId: 'race-baseline-0001', model: 'iris', version: '1', role: 'active', deviceIds: ids });
  const started = startController(t, world, 'ro-drop');
  controller = started.controller;
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] }), { by: 'alice' });
  await controller.idle();
  assert.deepEqual((await controller.status('ro-drop')).devices.map((device) => device.delivery), ['delivered', 'delivered', 'delivered']);

  frozen.value = true;
  raced = true;
  await controller.rollback('ro-drop', 'operator', 'bad candidate');
  await controller.idle();
  const counted = async () => (await controller!.status('ro-drop')).devices.map((device) => `${device.id}:${device.delivery}`).sort().join(' ');
  assert.equal(await counted(), 'race-1:delivered race-2:retrying race-3:retrying');

  // They thaw and answer, in order, the drop (no candidate: they run 2) and the retained baseline.
  frozen.value = false;
  for (const send of frozen.held!.splice(0)) send();
  await waitFor(async () => {
    await started.scheduler.advance(ANSWER_BATCH_MS);
    return (await counted()) === 'race-1:delivered race-2:refused race-3:delivered';
  }, 5000, 'the answers to the retained baselines recorded').catch(async (error: Error) => assert.fail(`${error.message}: ${await counted()}`));
  const state = await controller.status('ro-drop');
  assert.match(state.devices.find((device) => device.id === 'race-2')!.reason ?? '', /refused/);
});

test('a finished rollout leaves alone a device an operator assigned something since: its return online no longer brings the rollout\'s version back', async (t) => {
  const { fleet, store } = await startFleet(t);
  const present = await fleet.devices.enroll({ id: 'back-a', labels: { site: 'north' } }, 'test');
  const absent = await fleet.devices.enroll({ id: 'back-b', labels: { site: 'north' } }, 'test');
  await scriptedDevice(t, present);
  await waitFor(async () => (await fleet.devices.get('back-a')).online, 5000, 'back-a online');
  await fleet.fleetPort.assign({ commandId: 'back-baseline-0001', model: 'iris', version: '1', role: 'active', deviceIds: ['back-a', 'back-b'] });

  const { controller } = startController(t, { fleet, store }, 'ro-back');
  // back-b stays offline: unreachable at once (one attempt), and the rollout completes without it.
  const spec = validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }], offline: { maxAttempts: 1 } });
  await controller.start(spec, { by: 'alice' });
  await waitFor(async () => (await controller.status('ro-back')).phase === 'Completed', 10_000, 'the rollout completed');
  await controller.idle();
  assert.equal((await controller.status('ro-back')).devices.find((d) => d.id === 'back-b')?.delivery, 'unreachable');

  // The operator gives back-b version 1 directly; then back-b comes back.
  const direct = await fleet.assignments.assign({ model: 'iris', version: '1', role: 'active', deviceIds: ['back-b'] }, 'operator');
  const lastReceived: string[] = [];
  const client = await scriptedDevice(t, absent);
  client.on('message', (topic, payload) => {
    const parsed = parseMessage(topic, payload);
    if (parsed.ok && parsed.message.kind === 'assignment') lastReceived.push(`${parsed.message.payload.role}:${parsed.message.payload.version}`);
  });
  await waitFor(async () => (await fleet.devices.get('back-b')).online, 5000, 'back-b online');
  await controller.deviceOnline('back-b');
  await controller.idle();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const device = await fleet.devices.get('back-b');
  assert.equal(device.retainedAssignment?.id, direct.assignmentId, 'the operator\'s assignment stands');
  assert.deepEqual(lastReceived.filter((entry) => entry !== 'active:1'), [], `back-b got only version 1 (${lastReceived.join(', ')})`);
});

test('a device that missed a rollback gets the next rollout\'s candidate only once it has taken its baseline back: the candidate does not replace the retained activation', async (t) => {
  let controller: RolloutController | undefined;
  // Only the answer wakes the rollout here (no onDeviceOnline): the device's answer to its retained baseline.
  const world = await startFleet(t, { hooks: { onSlotsChanged: (deviceId) => void controller?.deviceOnline(deviceId, 'answered') } });
  const { fleet } = world;
  const configs = [];
  const clients = [];
  for (const id of ['miss-a', 'miss-b']) {
    const config = await fleet.devices.enroll({ id, labels: { site: 'north' } }, 'test');
    configs.push(config);
    clients.push(await scriptedDevice(t, config));
    await waitFor(async () => (await fleet.devices.get(id)).online, 5000, `${id} online`);
  }
  const ids = ['miss-a', 'miss-b'];
  await fleet.fleetPort.assign({ commandId: 'miss-baseline-0001', model: 'iris', version: '1', role: 'active', deviceIds: ids });
  assert.deepEqual((await fleet.fleetPort.assign({ commandId: 'miss-promoted-0001', model: 'iris', version: '2', role: 'active', deviceIds: ids })).map((r) => r.outcome), ['delivered', 'delivered']);

  // miss-b goes offline; the rollback sends both back to 1: miss-b's activation of 1 waits, retained.
  await clients[1]!.publishAsync(statusTopic('miss-b'), Buffer.from(JSON.stringify({ schema: 1, deviceId: 'miss-b', online: false, since: new Date().toISOString() })), { qos: 1, retain: true });
  await clients[1]!.endAsync();
  await waitFor(async () => !(await fleet.devices.get('miss-b')).online, 5000, 'miss-b offline');
  const reverted = await fleet.fleetPort.revert({ commandId: 'miss-rollback-0001', model: 'iris', devices: ids.map((deviceId) => ({ deviceId, version: '1' })) });
  assert.deepEqual(reverted.map((r) => `${r.deviceId}:${r.outcome}`), ['miss-a:delivered', 'miss-b:offline']);
  assert.equal((await fleet.devices.get('miss-b')).retainedAssignment?.id, 'miss-rollback-0001');

  // The next rollout of the model: miss-a gets the candidate; miss-b does not, yet.
  const started = startController(t, world, 'ro-missed');
  controller = started.controller;
  await controller.start(validateRolloutSpec({ model: 'iris', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }], offline: { maxAttempts: 1 } }), { by: 'alice' });
  await controller.idle();
  const missB = async () => (await controller!.status('ro-missed')).devices.find((device) => device.id === 'miss-b')!;
  assert.equal((await missB()).baseline, '1');
  assert.equal((await missB()).delivery, 'unreachable');
  assert.match((await missB()).reason ?? '', /has yet to activate iris@1 \(assignment miss-rollback-0001\)/);
  const retained = (await fleet.devices.get('miss-b')).retainedAssignment;
  assert.deepEqual([retained?.id, retained?.role, retained?.version], ['miss-rollback-0001', 'active', '1'], 'the rollback\'s activation stays retained for miss-b');

  // miss-b comes back: it takes 1 back first, and its answer brings the candidate.
  const received: string[] = [];
  await scriptedDevice(t, configs[1]!, { received });
  await waitFor(async () => (await missB()).delivery === 'delivered', 10_000, 'the candidate delivered to miss-b').catch(async (error: Error) => assert.fail(`${error.message}: ${JSON.stringify(await missB())} ${received.join(', ')}`));
  assert.deepEqual(received, ['active:1', 'candidate:2']);
  const device = await fleet.devices.get('miss-b');
  assert.deepEqual([device.active?.version, device.candidate?.version], ['1', '2']);
  const decisions = await controller.decisions('ro-missed');
  assert.ok(decisions.some((decision) => /device miss-b answered an earlier assignment; sending it/.test(decision.message)), JSON.stringify(decisions.map((d) => d.message)));
});

test('a drop-candidate revert to more devices than one message can name goes out in several signed, numbered messages, each under the payload limit', async (t) => {
  const { fleet, store, signingKey } = await startFleet(t);
  // 4,000 devices with 36-character ids (UUIDs) need about 160 KB of ids: more than the 64 KiB a device accepts.
  const ids = Array.from({ length: 4000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  await new FleetStore(store).transaction(async (repos) => {
    for (const id of ids) {
      await repos.devices.insert({ id, labels: {}, secretHash: 'x', tokenId: `tok-${id}`, enrolledAt: new Date().toISOString(), enrolledBy: 'test' });
    }
  });
  // One real device, named last: its id is in the last message.
  const online = await fleet.devices.enroll({ id: 'zz-online-device', labels: {} }, 'test');
  const client = await scriptedDevice(t, online);
  const commands: { payload: Buffer }[] = [];
  client.on('message', (topic, payload) => topic === FLEET_COMMANDS_TOPIC && commands.push({ payload }));
  await waitFor(async () => (await fleet.devices.get('zz-online-device')).online, 5000, 'the device online');

  const everyone = [...ids, 'zz-online-device'];
  const results = await fleet.fleetPort.revert({ commandId: 'cmd-big-drop-0001', model: 'iris', devices: everyone.map((deviceId) => ({ deviceId, version: null })) });
  assert.deepEqual(results.find((result) => result.deviceId === 'zz-online-device'), { deviceId: 'zz-online-device', outcome: 'delivered' });
  assert.equal(results.filter((result) => result.outcome === 'offline').length, 4000);

  await waitFor(() => commands.length >= 3, 5000, 'every message of the command');
  const parsed = commands.map(({ payload }) => parseMessage(FLEET_COMMANDS_TOPIC, payload));
  assert.ok(parsed.every((message) => message.ok), 'each message is one a device accepts (not too-large)');
  const messages = parsed.map((message) => (message.ok && message.message.kind === 'commands' ? message.message.payload : assert.fail('not a command')));
  assert.ok(messages.length >= 3, `${messages.length} messages`);
  assert.ok(messages.every((message) => message.id === 'cmd-big-drop-0001' && message.command === 'drop-candidate'));
  assert.ok(messages.every((message) => commandSignatureVerifies(message, signingKey.publicKey)));
  const seqs = messages.map((message) => message.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'numbered in the order they were sent');
  assert.equal(new Set(seqs).size, seqs.length);
  const named = messages.flatMap((message) => message.selector.deviceIds ?? []);
  assert.deepEqual(named.sort(), everyone.sort(), 'every device is named exactly once');
  // Every device the command went to has its record, so its answer counts.
  assert.equal(Number((await store.engine.get('SELECT COUNT(*) AS n FROM fleet_commands WHERE id = ?', ['cmd-big-drop-0001']))!.n), 4001);
});

test('an audit entry names up to 100 devices, then the first 100 and how many there were', () => {
  const ids = Array.from({ length: 250 }, (_, i) => `dev-${i}`);
  assert.deepEqual(auditedDevices(ids.slice(0, 3)), { devices: ['dev-0', 'dev-1', 'dev-2'] });
  assert.deepEqual(auditedDevices(ids.slice(0, 100)).devices.length, 100);
  const many = auditedDevices(ids);
  assert.deepEqual([many.devices.length, many.devices.at(-1), many.deviceCount], [100, 'dev-99', 250]);
});
