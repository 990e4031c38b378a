import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent } from '../../agent/agent.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { KEYS_SUBDIR } from '../../server/artifacts/server-signing-key.ts';
import { generateSigningKeys, loadPrivateKey, PRIVATE_KEY_FILE } from '../../shared/artifact/signing-keys.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { ADMIN_TOKEN, ServerChild } from '../acceptance/fleet-fixture.ts';
import { freePort } from '../helpers/engines.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, pushArtifact } from '../server/helpers/artifacts.ts';
import type { TestServer } from '../server/helpers/test-server.ts';
import { json } from './rollback-world.ts';

/**
 * A real `fleetprune server` process (SQLite, embedded broker) is killed with -9 right after it
 * accepted a rollback of a fully promoted rollout — its revert published or about to be, the
 * devices' answers not yet in — and started again: every device ends on its baseline, the rollout
 * counts them all back, and the previous version is production again.
 */
test('kill -9 of the server right after a rollback of a promoted rollout: after the restart every device is on its baseline and production is restored', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-rollback-kill9-'));
  // Last-in first-out: the agents stop, then the server, before their directories go (the
  // agents' outboxes were being written while t.after's first-come order removed them: ENOTEMPTY).
  deferCleanup(t, () => rm(dir, { recursive: true, force: true, maxRetries: 3 }));
  const keys = await generateSigningKeys(join(dir, 'keys'));
  const dataDir = join(dir, 'server');
  await mkdir(join(dataDir, KEYS_SUBDIR), { recursive: true });
  await copyFile(keys.privateKeyPath, join(dataDir, KEYS_SUBDIR, PRIVATE_KEY_FILE));
  const args = { dataDir, ports: { http: await freePort(), grpc: await freePort(), mqtt: await freePort() }, extraArgs: [], env: {} };
  let server = await ServerChild.start(args);
  deferCleanup(t, () => server.kill9());
  const baseUrl = `http://127.0.0.1:${args.ports.http}`;
  const request: TestServer['request'] = (method, path, { json: value, body, headers = {} } = {}) =>
    fetch(`${baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(value === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: (value === undefined ? body : JSON.stringify(value)) as BodyInit | undefined,
    });
  const api = { request } as TestServer;
  const key = await loadPrivateKey(keys.privateKeyPath);
  for (const version of ['1', '2']) {
    const artifact = await makeArtifact(t, { seed: Number(version), privateKey: key, version, name: 'wine', units: 4 + Number(version) * 4 });
    await json(await pushArtifact(api, 'wine', artifact.dir, artifact.manifest));
  }
  const ids = ['kill-1', 'kill-2', 'kill-3'];
  const sessions = new OrtSessionCache();
  const agents = new Map<string, Agent>();
  deferCleanup(t, () => Promise.allSettled([...agents.values()].map((agent) => agent.stop())));
  for (const id of ids) {
    const config = await json<AgentConfig>(await request('POST', '/api/devices', { json: { id, labels: { site: 'north' } } }));
    const agent = new Agent(
      { config, dataDir: join(dir, id), mqttReconnectMs: 200, retryBaseDelayMs: 100, heartbeatIntervalMs: 500 },
      { connector: connectMqtt, sessions, clock: () => new Date(), logger: testLogger },
    );
    agents.set(id, agent);
    await agent.start();
  }
  await json(await request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds: ids } }));
  await json(await request('PUT', '/api/models/wine/aliases/production', { json: { version: '1' } }));
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '1'), 20_000, 'every device on wine@1');

  const spec = { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 100 }], offline: { initialBackoff: '200ms', maxBackoff: '1s', maxAttempts: 5 } };
  const { id } = await json<{ id: string }>(await request('POST', '/api/rollouts', { json: spec }));
  await waitFor(async () => (await json(await request('GET', `/api/rollouts/${id}`))).phase === 'Completed', 30_000, 'the rollout completed');
  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '2'), 20_000, 'every device on wine@2');

  await json(await request('POST', `/api/rollouts/${id}/rollback?reason=kill9`));
  await server.kill9();
  server = await ServerChild.start(args);

  await waitFor(() => [...agents.values()].every((agent) => agent.slots.active?.version === '1'), 30_000, 'every device back on wine@1');
  let rollout: any;
  await waitFor(async () => {
    rollout = await json(await request('GET', `/api/rollouts/${id}`));
    return rollout.devices.delivered === ids.length && rollout.pendingActions.length === 0;
  }, 45_000, 'the rollout counts every device back').catch((error) => {
    throw new Error(`${error.message}: ${JSON.stringify({ phase: rollout?.phase, devices: rollout?.devices, pending: rollout?.pendingActions, states: rollout?.deviceStates })}`);
  });
  assert.equal(rollout.phase, 'RolledBack');
  assert.equal((await json(await request('GET', '/api/models/wine/versions/production'))).version, '1');
  for (const agent of agents.values()) assert.equal(agent.slots.candidate, null);
});
