import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Agent } from '../../agent/agent.ts';
import { connectMqtt, type MqttConnector } from '../../agent/mqtt-link.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { BlobProxy } from '../helpers/blob-proxy.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, pushArtifact } from '../server/helpers/artifacts.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';

/**
 * Aborting a rollout while its devices are still obtaining the candidate, end to end: an
 * in-process server (store, embedded aedes broker, rollout controller, StoreFleetPort) and real
 * agents over MQTT, whose blob downloads go through a proxy that can hold them.
 */

async function json<T = any>(response: Response): Promise<T> {
  const body = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

interface World {
  server: TestServer;
  gate: BlobProxy;
  agents: Map<string, Agent>;
  configs: Map<string, AgentConfig>;
  dataDir: string;
  candidateBlob: string;
  startAgent(id: string, connector?: MqttConnector): Promise<Agent>;
}

async function startWorld(t: TestContext, deviceIds: readonly string[]): Promise<World> {
  const gate = await BlobProxy.start(t);
  const server = (await startTestServer(t, { config: { publicUrl: gate.url } }))!;
  gate.target = server.baseUrl;
  const key = server.server.ctx.signingKey.privateKey;
  const baseline = await makeArtifact(t, { seed: 1, privateKey: key, version: '1', name: 'wine' });
  const candidate = await makeArtifact(t, { seed: 2, privateKey: key, version: '2', name: 'wine', units: 16 });
  for (const artifact of [baseline, candidate]) await json(await pushArtifact(server, 'wine', artifact.dir, artifact.manifest));
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-abort-'));
  const sessions = new OrtSessionCache();
  const agents = new Map<string, Agent>();
  const configs = new Map<string, AgentConfig>();
  t.after(async () => {
    await Promise.allSettled([...agents.values()].map((agent) => agent.stop()));
    await rm(dataDir, { recursive: true, force: true });
  });
  const startAgent = async (id: string, connector: MqttConnector = connectMqtt) => {
    const agent = new Agent(
      { config: configs.get(id)!, dataDir: join(dataDir, id), mqttReconnectMs: 200, retryBaseDelayMs: 100, heartbeatIntervalMs: 500 },
      { connector, sessions, clock: () => new Date(), logger: testLogger },
    );
    agents.set(id, agent);
    await agent.start();
    return agent;
  };
  for (const id of deviceIds) {
    configs.set(id, await json<AgentConfig>(await server.request('POST', '/api/devices', { json: { id, labels: { site: 'north' } } })));
    await startAgent(id);
  }
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds } }));
  await waitFor(async () => {
    const { devices } = await json<{ devices: any[] }>(await server.request('GET', '/api/devices'));
    return devices.filter((device) => device.active?.version === '1' && device.online).length === deviceIds.length;
  }, 20_000, 'every device runs v1');
  return { server, gate, agents, configs, dataDir, candidateBlob: candidate.manifest.files['model.onnx']!.sha256, startAgent };
}

/**
 * The real connector, except that while `holding` is set, messages on the device's assignment
 * topic are kept back (in order) until release(): the broker delivered them, the agent has not
 * seen them yet. `commands` lists the fleet commands the agent was given.
 */
class AssignmentHold {
  holding = false;
  readonly commands: string[] = [];
  readonly #held: (() => void)[] = [];

  readonly connector: MqttConnector = (url, options) => {
    const client = connectMqtt(url, options);
    const emit = client.emit.bind(client) as (event: string, ...args: unknown[]) => boolean;
    (client as unknown as { emit: typeof emit }).emit = (event, ...args) => {
      if (event === 'message') {
        const topic = String(args[0]);
        if (topic.endsWith('/commands')) this.commands.push(JSON.parse(String(args[1])).id);
        if (topic.endsWith('/assignment') && this.holding) {
          this.#held.push(() => emit(event, ...args));
          return true;
        }
      }
      return emit(event, ...args);
    };
    return client;
  };

  release(): void {
    this.holding = false;
    for (const deliver of this.#held.splice(0)) deliver();
  }
}

const SPEC = { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }, { pause: {} }] };

async function rolloutOf(server: TestServer, id: string): Promise<any> {
  return json(await server.request('GET', `/api/rollouts/${id}`));
}

/** The device's answers to assignments and commands, in the order the server received them. */
async function answersOf(server: TestServer, deviceId: string): Promise<string[]> {
  const rows = await server.server.ctx.store.engine.all<{ payload: string }>("SELECT payload FROM device_reports WHERE device_id = ? AND kind = 'assignment' ORDER BY received_at, rowid", [deviceId]);
  return rows.map((row) => JSON.parse(row.payload)).map((r) => `${r.assignmentId} ${r.role} v${r.version} ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`);
}

async function deviceView(server: TestServer, id: string): Promise<any> {
  return json(await server.request('GET', `/api/devices/${id}`));
}

test('abort while every device is still downloading the candidate: the devices end on their baseline and the revert counts them reverted, not refused', { timeout: 90_000 }, async (t) => {
  const ids = ['abort-1', 'abort-2', 'abort-3'];
  const world = await startWorld(t, ids);
  const { server, gate, agents } = world;
  gate.held.add(world.candidateBlob);

  const { id } = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: SPEC }));
  await waitFor(() => gate.waiting.length >= ids.length, 20_000, 'every agent downloading the candidate');
  await json(await server.request('POST', `/api/rollouts/${id}/abort?reason=test`));
  // The revert's answers come in while the candidate's downloads are still held.
  const settled = await waitFor(async () => {
    const rollout = await rolloutOf(server, id);
    return rollout.devices.pending === 0 && rollout.devices.retrying === 0 && rollout.pendingActions.every((action: any) => action.kind !== 'revert');
  }, 20_000, 'the revert answered').then(() => rolloutOf(server, id));
  gate.releaseAll();
  await Promise.all([...agents.values()].map((agent) => agent.idle()));
  await new Promise((resolve) => setTimeout(resolve, 1500));

  const states = settled.deviceStates.map((device: any) => `${device.id} ${device.desired} ${device.delivery} ${device.reason ?? ''}`);
  for (const deviceId of ids) {
    const agent = agents.get(deviceId)!;
    assert.equal(agent.slots.active?.version, '1', `${deviceId} serves its baseline`);
    assert.equal(agent.slots.candidate, null, `${deviceId} holds no candidate`);
    const view = await deviceView(server, deviceId);
    assert.deepEqual([view.assignment?.version, view.assignment?.role], ['1', 'active'], `${deviceId}: the baseline is retained`);
  }
  const answers = (await Promise.all(ids.map((deviceId) => answersOf(server, deviceId)))).map((list, i) => `${ids[i]}:\n  ${list.join('\n  ')}`);
  if (process.env.SHOW_ANSWERS) console.log(answers.join('\n'));
  assert.equal(settled.phase, 'Aborted');
  assert.equal(settled.devices.refused, 0, `no device refused its baseline: ${states.join('; ')}\n${answers.join('\n')}`);
  assert.equal(settled.devices.delivered, ids.length, states.join('; '));
});

test('abort while a device that was downloading the candidate is stopped: back up, it ends on its baseline and counts as reverted', { timeout: 90_000 }, async (t) => {
  const ids = ['restart-1', 'restart-2'];
  const world = await startWorld(t, ids);
  const { server, gate, agents } = world;
  gate.held.add(world.candidateBlob);
  const spec = { ...SPEC, offline: { initialBackoff: '500ms', maxBackoff: '1s', maxAttempts: 20 } };
  const { id } = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: spec }));
  await waitFor(() => gate.waiting.length >= ids.length, 20_000, 'every agent downloading the candidate');
  // restart-1 stops mid-download: its candidate assignment stays pending on disk.
  await agents.get('restart-1')!.stop();
  await waitFor(async () => !(await deviceView(server, 'restart-1')).online, 10_000, 'restart-1 offline');
  await json(await server.request('POST', `/api/rollouts/${id}/abort?reason=test`));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  gate.releaseAll();
  const restarted = await world.startAgent('restart-1');
  await waitFor(async () => {
    const rollout = await rolloutOf(server, id);
    return rollout.devices.pending === 0 && rollout.devices.retrying === 0;
  }, 30_000, 'the revert answered');
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await restarted.idle();
  const settled = await rolloutOf(server, id);
  const states = settled.deviceStates.map((device: any) => `${device.id} ${device.desired} ${device.delivery} ${device.reason ?? ''}`);
  const answers = (await Promise.all(ids.map((deviceId) => answersOf(server, deviceId)))).map((list, i) => `${ids[i]}:\n  ${list.join('\n  ')}`);
  if (process.env.SHOW_ANSWERS) console.log(answers.join('\n'));
  for (const deviceId of ids) {
    const agent = agents.get(deviceId)!;
    assert.deepEqual([agent.slots.active?.version, agent.slots.candidate?.version ?? null], ['1', null], `${deviceId}: ${answers.join('\n')}`);
    const view = await deviceView(server, deviceId);
    assert.deepEqual([view.assignment?.version, view.assignment?.role], ['1', 'active'], `${deviceId}: the baseline is retained`);
  }
  assert.equal(settled.devices.refused, 0, `${states.join('; ')}\n${answers.join('\n')}`);
});

test('a device stopped after taking the drop-candidate but before the retained baseline: the candidate download it resumes does not stay installed', { timeout: 90_000 }, async (t) => {
  const ids = ['race-1'];
  const world = await startWorld(t, ids);
  const { server, gate, agents } = world;
  // race-1 runs again with a connector that can keep its assignment messages back.
  const first = new AssignmentHold();
  await agents.get('race-1')!.stop();
  await world.startAgent('race-1', first.connector);
  await waitFor(async () => (await deviceView(server, 'race-1')).online && agents.get('race-1')!.connected, 10_000, 'race-1 back online');
  gate.held.add(world.candidateBlob);
  const { id } = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: SPEC }));
  await waitFor(() => gate.waiting.length >= 1, 20_000, 'race-1 downloading the candidate');
  // The revert's drop-candidate reaches the agent; its retained baseline, published a moment
  // later, is still on the way when the agent is stopped (a restart at the wrong millisecond).
  first.holding = true;
  await json(await server.request('POST', `/api/rollouts/${id}/abort?reason=test`));
  await waitFor(() => first.commands.length > 0, 10_000, 'the drop-candidate reached the agent');
  await agents.get('race-1')!.stop();
  gate.releaseAll();
  // Back up, the retained baseline again comes a moment after the interrupted download resumed.
  const second = new AssignmentHold();
  second.holding = true;
  const restarted = await world.startAgent('race-1', second.connector);
  await waitFor(() => restarted.connected, 10_000, 'race-1 connected');
  await restarted.idle();
  second.release();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await restarted.idle();
  await waitFor(async () => {
    const rollout = await rolloutOf(server, id);
    return rollout.devices.pending === 0 && rollout.devices.retrying === 0;
  }, 30_000, 'the revert answered');
  const settled = await rolloutOf(server, id);
  const answers = await answersOf(server, 'race-1');
  if (process.env.SHOW_ANSWERS) console.log(answers.join('\n'));
  assert.deepEqual([restarted.slots.active?.version, restarted.slots.candidate?.version ?? null], ['1', null], `race-1 holds only its baseline:\n${answers.join('\n')}`);
  const view = await deviceView(server, 'race-1');
  assert.deepEqual([view.assignment?.version, view.assignment?.role, view.candidate], ['1', 'active', null]);
  assert.equal(settled.devices.refused, 0, answers.join('\n'));
});
