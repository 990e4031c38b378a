import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Agent } from '../../agent/agent.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { startServer } from '../../server/app/start-server.ts';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { AssignmentPublisher } from '../../server/fleet/assignment-publisher.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetPort } from '../../server/fleet/store-fleet-port.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { createLogger } from '../../shared/util/log.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';

/**
 * The reviewer's scenario, end to end: artifacts signed with the operator's own key, pushed to a
 * server started with --trusted-key, assigned over REST to real agents (embedded aedes broker,
 * onnxruntime, files). Before the fix every device refused them ("made with key …, not with the
 * given key …") and nothing on the server showed it.
 */

async function json<T = any>(response: Response): Promise<T> {
  const body = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

async function device(server: TestServer, id: string): Promise<any> {
  return json(await server.request('GET', `/api/devices/${id}`));
}

/** The device's answers, oldest first, as `vVERSION ROLE OUTCOME (reason)`. */
async function answers(server: TestServer, deviceId: string): Promise<string[]> {
  const rows = await server.server.ctx.store.engine.all<{ payload: string }>("SELECT payload FROM device_reports WHERE device_id = ? AND kind = 'assignment' ORDER BY received_at, rowid", [deviceId]);
  return rows.map((row) => JSON.parse(row.payload)).map((r) => `v${r.version} ${r.role} ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`);
}

function startAgent(t: TestContext, config: AgentConfig, dataDir: string, sessions: OrtSessionCache): Promise<Agent> {
  const agent = new Agent(
    { config, dataDir, mqttReconnectMs: 200, retryBaseDelayMs: 100, heartbeatIntervalMs: 500 },
    { connector: connectMqtt, sessions, clock: () => new Date(), logger: testLogger },
  );
  t.after(() => agent.stop());
  return agent.start().then(() => agent);
}

test('artifacts signed with a --trusted-key are activated on real agents, survive a restart, and roll back from disk', async (t) => {
  const ci = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [ci.publicKeyPath] } }))!;
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: ci.privateKey, version, name: 'wine' });
    await json(await pushArtifact(server, 'wine', artifact.dir, artifact.manifest));
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-trusted-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const sessions = new OrtSessionCache();
  const config = await json<AgentConfig>(await server.request('POST', '/api/devices', { json: { id: 'dev-1', labels: { site: 'north' } } }));
  const first = await startAgent(t, config, join(dataDir, 'dev-1'), sessions);

  const activeIs = async (version: string) => (await device(server, 'dev-1')).active?.version === version;
  // The device's answers, not its slots: a heartbeat can show the new active model before the
  // answer that reports it is stored.
  const answered = async (count: number) => (await answers(server, 'dev-1')).length >= count;
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ['dev-1'] } }));
  await waitFor(() => answered(1), 20_000, 'v1 answered');
  assert.deepEqual(await answers(server, 'dev-1'), ['v1 active activated']);
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '2', role: 'active', deviceIds: ['dev-1'] } }));
  await waitFor(() => activeIs('2'), 20_000, 'v2 active');
  assert.equal((await device(server, 'dev-1')).lastRefusal, null);

  // Restarted, the agent verifies both models again from disk (with the server's endorsements it
  // kept) and serves v2; assigning v1 again switches back to it from disk (an operator's assign,
  // not a rollout's revert: answered activated).
  await first.stop();
  const second = await startAgent(t, config, join(dataDir, 'dev-1'), sessions);
  assert.deepEqual([second.slots.active?.version, second.slots.previous?.version], ['2', '1']);
  const downloaded = (await second.metrics.downloadedBytes.get()).values[0]?.value ?? 0;
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ['dev-1'] } }));
  await waitFor(async () => (await activeIs('1')) && (await answered(3)), 20_000, 'v1 active again, and answered');
  assert.deepEqual(await answers(server, 'dev-1'), ['v1 active activated', 'v2 active activated', 'v1 active activated']);
  assert.equal((await second.metrics.downloadedBytes.get()).values[0]?.value ?? 0, downloaded, 'nothing downloaded');

  // A refusal shows on the device: v1 as a candidate while it is active.
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'candidate', deviceIds: ['dev-1'] } }));
  await waitFor(async () => (await device(server, 'dev-1')).lastRefusal !== null, 20_000, 'the refusal visible');
  const { lastRefusal } = await device(server, 'dev-1');
  assert.deepEqual({ ...lastRefusal, at: typeof lastRefusal.at, assignmentId: typeof lastRefusal.assignmentId }, {
    assignmentId: 'string',
    outcome: 'refused',
    role: 'candidate',
    model: 'wine',
    version: '1',
    reason: '1 is already the active model',
    failedRole: null,
    at: 'string',
  });
});

test('an assignment of a version whose signer key is no longer trusted is refused with a 409 naming the key', async (t) => {
  const ci = await makeSigner(t);
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-untrusted-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const settings = { dataDir, host: '127.0.0.1', httpPort: 0, grpcPort: 0, mqttPort: 0, adminToken: ADMIN_TOKEN };
  const start = async (trustedKeys: string[]): Promise<TestServer> => {
    const running = await startServer(parseServerConfig({ ...settings, trustedKeys }), { log: createLogger('test-server', 'silent') });
    t.after(() => running.close());
    const baseUrl = `http://127.0.0.1:${running.port('http')}`;
    const request: TestServer['request'] = (method, path, { json: value, body, headers = {} } = {}) =>
      fetch(`${baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(value === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: (value === undefined ? body : JSON.stringify(value)) as BodyInit | undefined,
      });
    return { server: running, dataDir, baseUrl, grpcAddress: '', request };
  };
  const trusting = await start([ci.publicKeyPath]);
  const artifact = await makeArtifact(t, { seed: 3, privateKey: ci.privateKey, version: '1', name: 'wine' });
  await json(await pushArtifact(trusting, 'wine', artifact.dir, artifact.manifest));
  await json(await trusting.request('POST', '/api/devices', { json: { id: 'dev-2', labels: { site: 'north' } } }));
  await trusting.server.close();

  // Restarted without --trusted-key: the version is still registered, but no device would accept it.
  const server = await start([]);
  const response = await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ['dev-2'] } });
  const body = await response.text();
  assert.equal(response.status, 409, body);
  assert.ok(body.includes(`wine@1 is signed with key ${keyId(ci.privateKey)}, which this server does not trust (--trusted-key)`), body);
  assert.equal((await device(server, 'dev-2')).assignment, null, 'nothing recorded');

  // A rollout of it is refused the same way at its start (it would fail at its first step, blaming
  // the devices), and nothing is stored.
  const rollout = await server.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '1', target: { matchLabels: { site: 'north' } }, steps: [{ setWeight: 100 }] } });
  assert.equal(rollout.status, 409);
  assert.deepEqual(await rollout.json(), {
    error: { code: 'conflict', message: `candidateVersion: wine@1 is signed with key ${keyId(ci.privateKey)}, which this server does not trust (--trusted-key); devices would refuse it` },
  });
  assert.deepEqual(await json(await server.request('GET', '/api/rollouts')), { rollouts: [], total: 0, more: false, offset: 0 });

  // A rollout's assignment (through StoreFleetPort, as the rollout controller calls it) is not
  // sent either: the devices count as refusing it, naming the key, so the rollout fails.
  const { ctx } = server.server;
  const fleet = new FleetStore(ctx.store);
  const publisher = new AssignmentPublisher({ fleet, broker: undefined as never, serverUrl: () => server.baseUrl, log: testLogger, signingKey: ctx.signingKey.privateKey, trustedKeys: ctx.trustedKeys });
  const port = new StoreFleetPort({ fleet, registry: ctx.registry, publisher, outcomes: new AssignmentOutcomes(), log: testLogger });
  const results = await port.assign({ commandId: 'rollout-1-assign-1', model: 'wine', version: '1', role: 'candidate', deviceIds: ['dev-2', 'ghost'] });
  assert.deepEqual(results, [
    { deviceId: 'dev-2', outcome: 'refused', reason: `wine@1 is signed with key ${keyId(ci.privateKey)}, which this server does not trust (--trusted-key); devices would refuse it` },
    { deviceId: 'ghost', outcome: 'gone', reason: 'not an enrolled device' },
  ]);
  assert.equal((await device(server, 'dev-2')).assignment, null, 'nothing recorded');
});
