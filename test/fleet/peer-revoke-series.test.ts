import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startServer, type RunningServer, type StartServerOptions } from '../../server/app/start-server.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import type { BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { reportsTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { createLogger } from '../../shared/util/log.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

/*
 * Servers sharing one database, each ingesting from devices on its own (embedded) broker: a device
 * revoked through one keeps no series on the others.
 */

const sha = (version: string) => version.repeat(64).slice(0, 64);

function benchmark(deviceId: string, id: string): BenchmarkReport {
  const model = <R extends 'active' | 'candidate'>(role: R, version: string) => ({
    model: 'wine', version, sha256: sha(version), role, score: { accuracy: 0.9, correct: 45, total: 50 },
    latencyMs: { p50: 1, p95: 2, p99: 3, samples: 50 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 2, rssIncreaseBytes: 0,
  });
  return { schema: 1, id, kind: 'benchmark', deviceId, createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 50, fingerprint: 'f', task: 'classification' }, active: model('active', '1'), candidate: model('candidate', '2') };
}

const url = (server: RunningServer) => `http://127.0.0.1:${server.port('http')}`;
const request = (server: RunningServer, method: string, path: string, json?: unknown) =>
  fetch(`${url(server)}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, ...(json === undefined ? {} : { body: JSON.stringify(json) }) });

/** Servers A and B on one fresh PostgreSQL schema and data directory, each with its embedded broker; null when PostgreSQL is missing. */
async function twoServers(t: TestContext, b: Omit<StartServerOptions, 'log'> = {}): Promise<{ a: RunningServer; b: RunningServer } | null> {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return null;
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-peer-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const config = (nodeId: string) => parseServerConfig({ dataDir, host: '127.0.0.1', httpPort: 0, grpcPort: 0, mqttPort: 0, adminToken: ADMIN_TOKEN, databaseUrl: location.databaseUrl, databaseSchema: location.schema, nodeId });
  const first = await startServer(config('node-a'), { log: createLogger('a', 'silent') });
  t.after(() => first.close());
  // The versions the reports name, registered (the ingest takes benchmarks of registered versions only).
  await registerVersions(first.ctx.store, ['1', '2'].map((version) => ({ model: 'wine', version, sha256: sha(version) })));
  const second = await startServer(config('node-b'), { log: createLogger('b', 'silent'), ...b });
  t.after(() => second.close());
  return { a: first, b: second };
}

test('two servers on one PostgreSQL with embedded brokers: a device revoked through A loses its series on B as soon as B hears from it', async (t) => {
  const servers = await twoServers(t);
  if (!servers) return;
  const { a, b } = servers;
  const enrolled = await request(a, 'POST', '/api/devices', { id: 'dev-1', labels: { cohort: 'pilot' } });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());
  const agent = AgentConfigSchema.parse(await enrolled.json());
  // The device is on B's broker.
  const client = await connectClient(`mqtt://127.0.0.1:${b.port('mqtt')}`, { clientId: 'dev-1', username: agent.broker.username, password: agent.broker.password });
  t.after(() => client.endAsync(true));
  await client.publishAsync(reportsTopic('dev-1'), JSON.stringify(benchmark('dev-1', 'bench-0001')), { qos: 1 });
  const series = async (server: RunningServer) => (await (await fetch(`${url(server)}/metrics`)).text()).split('\n').filter((line) => line.startsWith('fleetprune_device_') && line.includes('device="dev-1"'));
  await waitFor(async () => (await series(b)).length > 0, 5000, 'the benchmark exported on B');

  assert.equal((await request(a, 'DELETE', '/api/devices/dev-1')).status < 300, true, 'revoked through A');
  // Its heartbeat, still in flight (or sent before B's broker lets it go), reaches B: B learns of the revocation.
  await client.publishAsync(telemetryTopic('dev-1'), JSON.stringify({ schema: 1, deviceId: 'dev-1', sentAt: new Date().toISOString(), uptimeSeconds: 30, cpuPercent: 1, rssBytes: 1e8, active: { model: 'wine', version: '1', sha256: sha('1') }, candidate: { model: 'wine', version: '2', sha256: sha('2') }, previous: null }), { qos: 1 });
  await waitFor(async () => (await series(b)).length === 0, 5000, 'the revoked device\'s series gone from B');
  assert.deepEqual(await series(a), []);
});

test('two servers on one PostgreSQL: a device revoked through A that never speaks again loses its series on B at B\'s next check of its exported devices', async (t) => {
  const servers = await twoServers(t, { exportReconcileMs: 200 });
  if (!servers) return;
  const { a, b } = servers;
  const agents = [];
  for (const id of ['dev-1', 'dev-2']) {
    const enrolled = await request(a, 'POST', '/api/devices', { id, labels: { cohort: 'pilot' } });
    assert.equal(enrolled.status, 201, await enrolled.clone().text());
    agents.push(AgentConfigSchema.parse(await enrolled.json()));
  }
  const series = async (server: RunningServer, id: string) => (await (await fetch(`${url(server)}/metrics`)).text()).split('\n').filter((line) => line.startsWith('fleetprune_device_') && line.includes(`device="${id}"`));
  for (const agent of agents) {
    const client = await connectClient(`mqtt://127.0.0.1:${b.port('mqtt')}`, { clientId: agent.deviceId, username: agent.broker.username, password: agent.broker.password });
    await client.publishAsync(reportsTopic(agent.deviceId), JSON.stringify(benchmark(agent.deviceId, `bench-${agent.deviceId}`)), { qos: 1 });
    // Gone quiet: B hears nothing from either device after this.
    await client.endAsync();
    await waitFor(async () => (await series(b, agent.deviceId)).length > 0, 5000, `${agent.deviceId}'s benchmark exported on B`);
  }
  assert.equal((await request(a, 'DELETE', '/api/devices/dev-1')).status < 300, true, 'revoked through A');
  await waitFor(async () => (await series(b, 'dev-1')).length === 0, 5000, 'the revoked device\'s series gone from B');
  assert.notDeepEqual(await series(b, 'dev-2'), [], 'the device still enrolled keeps its series');
});
