import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { test, type TestContext } from 'node:test';
import { Agent } from '../../agent/agent.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';

/**
 * The reviewer's lost-model scenario end to end: a real server (store, embedded broker, REST) and
 * an in-process agent whose model files are deleted while it is stopped (state.json intact).
 */

async function json<T = any>(response: Response): Promise<T> {
  const body = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

const device = (server: TestServer, id: string) => server.request('GET', `/api/devices/${id}`).then((response) => json(response));

/** The device's answers as the server stored them, oldest first: `vVERSION ROLE OUTCOME (reason)`. */
async function answers(server: TestServer, deviceId: string): Promise<string[]> {
  const rows = await server.server.ctx.store.engine.all<{ payload: string }>("SELECT payload FROM device_reports WHERE device_id = ? AND kind = 'assignment' ORDER BY received_at, rowid", [deviceId]);
  return rows.map((row) => JSON.parse(row.payload)).map((r) => `v${r.version} ${r.role} ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`);
}

async function startAgent(t: TestContext, config: AgentConfig, dataDir: string): Promise<Agent> {
  const agent = new Agent(
    { config, dataDir, mqttReconnectMs: 200, retryBaseDelayMs: 100, heartbeatIntervalMs: 300 },
    { connector: connectMqtt, sessions: new OrtSessionCache(), clock: () => new Date(), logger: testLogger },
  );
  t.after(() => agent.stop());
  await agent.start();
  return agent;
}

test("models lost from the device's disk come back: the server's retained assignment is taken again and downloaded, and the server shows why the slots were emptied", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signer.privateKey, version, name: 'wine' });
    await json(await pushArtifact(server, 'wine', artifact.dir, artifact.manifest));
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-lost-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const config = await json<AgentConfig>(await server.request('POST', '/api/devices', { json: { id: 'lost-1', labels: {} } }));
  const first = await startAgent(t, config, dataDir);
  const activeIs = async (version: string | null) => (await device(server, 'lost-1')).active?.version === (version ?? undefined);
  for (const version of ['1', '2']) {
    await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version, role: 'active', deviceIds: ['lost-1'] } }));
    await waitFor(() => activeIs(version), 20_000, `v${version} active`);
  }
  await first.idle();
  await first.stop();

  // The SD card loses the model files; state.json still names v2 active and v1 previous.
  for (const name of await readdir(join(dataDir, 'models'))) await rm(join(dataDir, 'models', name), { recursive: true });
  const second = await startAgent(t, config, dataDir);
  await waitFor(() => second.slots.active?.version === '2', 20_000, 'v2 active again on the device');
  await waitFor(() => activeIs('2'), 10_000, 'the server sees v2 active');
  assert.equal((await readdir(join(dataDir, 'models'))).length, 1, 'v2 downloaded again (v1, the previous model, is no assignment of the server now)');

  // Why the slots were emptied: answers to the assignments that had filled them, shown as the device's last refusal.
  await waitFor(async () => (await answers(server, 'lost-1')).length >= 5, 10_000, 'the answers stored');
  const stored = await answers(server, 'lost-1');
  assert.deepEqual(stored.slice(0, 2), ['v1 active activated', 'v2 active activated']);
  assert.deepEqual(
    stored.slice(2).map((answer) => answer.replace(/\/\S+\/models\/[0-9a-f]{64}\//, 'models/<id>/')).sort(),
    [
      'v1 active refused (dropped from the previous slot, its files on the device unusable: models/<id>/manifest.json: missing (not a fleetprune artifact))',
      'v2 active activated',
      'v2 active refused (dropped from the active slot, its files on the device unusable: models/<id>/manifest.json: missing (not a fleetprune artifact))',
    ],
    stored.join('\n'),
  );
  const { lastRefusal } = await device(server, 'lost-1');
  assert.equal(lastRefusal?.outcome, 'refused');
  assert.match(lastRefusal?.reason ?? '', /^dropped from the (active|previous) slot, its files on the device unusable: \/\S+\/manifest\.json: missing/);
  const records = await server.server.ctx.store.engine.all<{ version: string; state: string }>('SELECT version, state FROM device_assignments WHERE device_id = ? ORDER BY issued_at', ['lost-1']);
  assert.deepEqual(records.map((record) => `${record.version} ${record.state}`), ['1 refused', '2 activated'], 'the restored assignment is on record as activated again');

  // Restarted once more, the device has what it needs: nothing is taken again.
  await second.stop();
  const third = await startAgent(t, config, dataDir);
  assert.equal(third.slots.active?.version, '2');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await third.idle();
  assert.equal((await answers(server, 'lost-1')).length, stored.length, 'no new answers');
});
