import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer, type RunningServer } from '../../server/app/start-server.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import { reportsTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { createLogger } from '../../shared/util/log.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';

const D = 'dev-1';

test('a candidate the device lost (only its heartbeats say so) is no longer exported, live and after a restart', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-lost-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const config = parseServerConfig({ dataDir, host: '127.0.0.1', httpPort: 0, grpcPort: 0, mqttPort: 0, adminToken: ADMIN_TOKEN });
  let server: RunningServer = await startServer(config, { log: createLogger('t', 'silent') });
  t.after(() => server.close());
  const request = (method: string, path: string, json?: unknown) =>
    fetch(`http://127.0.0.1:${server.port('http')}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, ...(json === undefined ? {} : { body: JSON.stringify(json) }) });
  await registerVersion(server.ctx.store, 'wine', '1', server.ctx.signingKey.privateKey);
  await registerVersion(server.ctx.store, 'wine', '2', server.ctx.signingKey.privateKey);
  const agent = AgentConfigSchema.parse(await (await request('POST', '/api/devices', { id: D, labels: { cohort: 'pilot' } })).json());
  const client = await connectClient(`mqtt://127.0.0.1:${server.port('mqtt')}`, { clientId: D, username: agent.broker.username, password: agent.broker.password });
  t.after(() => client.endAsync(true));
  let n = 0;
  const report = (payload: Record<string, unknown>) => client.publishAsync(reportsTopic(D), JSON.stringify({ schema: 1, id: `report-${n++}-xxxxxxxx`, deviceId: D, createdAt: new Date().toISOString(), ...payload }), { qos: 1 });
  const assign = async (role: string, version: string, outcome: string, reason: string | null = null) => {
    const assigned = (await (await request('POST', '/api/assignments', { model: 'wine', version, role, deviceIds: [D] })).json()) as { assignmentId: string; artifactId: string };
    await report({ kind: 'assignment', assignmentId: assigned.assignmentId, outcome, role, model: 'wine', version, sha256: assigned.artifactId, reason });
    return assigned;
  };
  const active = await assign('active', '1', 'activated');
  const candidate = await assign('candidate', '2', 'installed');
  // Each measured as the version registered (its artifact id): the server ingests benchmarks of registered versions only.
  const measured = (version: string, role: string) => ({ model: 'wine', version, sha256: (version === '1' ? active : candidate).artifactId, role, score: { accuracy: 0.9, correct: 45, total: 50 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 50 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 5, rssIncreaseBytes: 0 });
  await report({ kind: 'benchmark', assignmentId: null, holdout: { rows: 50, fingerprint: 'f', task: 'classification' }, active: measured('1', 'active'), candidate: measured('2', 'candidate') });
  const series = async () => (await (await fetch(`http://127.0.0.1:${server.port('http')}/metrics`)).text()).split('\n').filter((line) => line.startsWith('fleetprune_device_accuracy_ratio{') && line.includes(D)).map((line) => /role="(\w+)"/.exec(line)![1]).sort();
  await waitFor(async () => (await series()).length === 2, 5000, 'both models exported');

  // The agent restarted, found the candidate's files damaged and dropped it; only its heartbeat says so.
  await new Promise((resolve) => setTimeout(resolve, 10)); // a later device time than the benchmark's
  await client.publishAsync(telemetryTopic(D), JSON.stringify({ schema: 1, deviceId: D, sentAt: new Date().toISOString(), uptimeSeconds: 5, cpuPercent: 1, rssBytes: 1e8, active: { model: 'wine', version: '1', sha256: active.artifactId }, candidate: null, previous: null }), { qos: 1 });
  await waitFor(async () => ((await (await request('GET', `/api/devices/${D}`)).json()) as { candidate: unknown }).candidate === null, 5000, 'the heartbeat stored');
  await waitFor(async () => (await series()).join() === 'active', 5000, 'the lost candidate\'s series gone');
  await client.endAsync(true);
  await server.close();
  server = await startServer(config, { log: createLogger('t', 'silent') });
  assert.deepEqual(await series(), ['active'], 'after a restart too');
});
