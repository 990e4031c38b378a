import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { AgentConfigSchema, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { dropped } from '../helpers/fleet-ingest-probe.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';

async function enroll(server: TestServer, id: string, labels: Record<string, string>): Promise<AgentConfig> {
  const response = await server.request('POST', '/api/devices', { json: { id, labels } });
  assert.equal(response.status, 201, await response.clone().text());
  return AgentConfigSchema.parse(await response.json());
}

function labelsOf(count: number, keyLength = 8, valueLength = 8): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`${String(i).padStart(3, '0')}`.padEnd(keyLength, 'k'), 'v'.repeat(valueLength)]));
}


/** Counts the store's heartbeat writes (DevicesRepository.recordTelemetry) and status writes (setStatus). */
function countStateWrites(t: TestContext, server: TestServer): { heartbeats: number; statuses: number } {
  const engine = server.server.ctx.store.engine;
  const run = engine.run.bind(engine);
  const counts = { heartbeats: 0, statuses: 0 };
  engine.run = (sql, params) => {
    if (sql.startsWith('UPDATE devices SET online = CASE WHEN ? = 1 THEN 1 ELSE online END, last_seen')) counts.heartbeats++;
    if (sql.startsWith('UPDATE devices SET last_seen = CASE WHEN online = ?')) counts.statuses++;
    return run(sql, params);
  };
  t.after(() => (engine.run = run));
  return counts;
}

test('enrollment refuses more than 64 labels (REST and gRPC) and stores nothing; 64 labels of the longest key and value are enrolled', async (t) => {
  const server = (await startTestServer(t))!;
  const tooMany = await server.request('POST', '/api/devices', { json: { id: 'many-1', labels: labelsOf(65) } });
  assert.equal(tooMany.status, 400);
  assert.match(((await tooMany.json()) as { error: { message: string } }).error.message, /^body\.labels: at most 64 labels per device \(got 65\)/);
  const devicesGrpc = grpcClient(server.grpcAddress, 'Devices', ADMIN_TOKEN);
  t.after(() => devicesGrpc.close());
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'many-2', labels: labelsOf(65) }), (error: any) => error.code === 3 && /^labels: at most 64 labels per device \(got 65\)/.test(error.details));
  assert.deepEqual(await server.server.ctx.store.engine.all('SELECT id FROM devices'), [], 'nothing stored');
  // The limits of one label stay those of the agent config (keys 1-64 characters, values at most 256).
  const longValue = await server.request('POST', '/api/devices', { json: { id: 'long-1', labels: { site: 'v'.repeat(257) } } });
  assert.equal(longValue.status, 400);
  // A value with a newline or an escape sequence (it forged rows in `devices list`) is refused, naming the label.
  const forged = await server.request('POST', '/api/devices', { json: { id: 'ctl-1', labels: { site: 'north\nctl-2  online' } } });
  assert.equal(forged.status, 400);
  assert.equal(((await forged.json()) as { error: { message: string } }).error.message, 'body.labels.site: must not contain control characters such as newlines or escape sequences (found U+000A at character 6)');
  await assert.rejects(devicesGrpc.call('EnrollDevice', { id: 'ctl-2', labels: { site: '\u001b[2Jnorth' } }), (error: any) => error.code === 3 && /labels\.site: must not contain control characters .*U\+001B at character 1/.test(error.details));
  assert.deepEqual(await server.server.ctx.store.engine.all('SELECT id FROM devices'), [], 'nothing stored');
  const config = await enroll(server, 'full-1', labelsOf(64, 64, 256));
  assert.equal(Object.keys(config.labels).length, 64);
});

test('a device flooding heartbeats costs about one store write per second, the dropped ones are counted, and its latest heartbeat and status are stored', async (t) => {
  const server = (await startTestServer(t))!;
  const config = await enroll(server, 'flood-1', { site: 'osaka' });
  const writes = countStateWrites(t, server);
  const device = await connectClient(config.broker.url, { clientId: 'flood-1', username: 'flood-1', password: config.broker.password });
  t.after(() => device.endAsync(true));
  const heartbeat = (i: number, extra: object = {}) =>
    JSON.stringify({ schema: 1, deviceId: 'flood-1', sentAt: new Date().toISOString(), uptimeSeconds: i, cpuPercent: 1, rssBytes: 1000 + i, active: null, candidate: null, previous: null, ...extra });

  const sent = 300;
  const started = Date.now();
  for (let i = 0; i < sent; i++) {
    // One heartbeat claims labels of its own: the schema has none, so nothing of it may reach the device's labels.
    await device.publishAsync(telemetryTopic('flood-1'), heartbeat(i, i === 5 ? { labels: { site: 'elsewhere', extra: 'x' } } : {}), { qos: 1 });
  }
  const elapsedMs = Date.now() - started;
  // The latest heartbeat is stored once its interval passes.
  await waitFor(async () => (await server.server.ctx.store.engine.get('SELECT uptime_seconds FROM devices WHERE id = ?', ['flood-1']))?.uptime_seconds === sent - 1, 5000, 'the latest heartbeat stored');
  const bound = Math.ceil(elapsedMs / 1000) + 2;
  t.diagnostic(`${sent} heartbeats in ${elapsedMs} ms cost ${writes.heartbeats} heartbeat writes (bound ${bound})`);
  assert.ok(writes.heartbeats <= bound, `${writes.heartbeats} heartbeat writes for ${sent} heartbeats in ${elapsedMs} ms`);
  await waitFor(async () => (await dropped(server, 'telemetry', 'rate-limited')) === sent - writes.heartbeats, 3000, 'every unwritten heartbeat counted as dropped');

  // A burst ending in an offline status: both are held, and written in the order they came.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  for (let i = 0; i < 20; i++) await device.publishAsync(telemetryTopic('flood-1'), heartbeat(1000 + i), { qos: 1 });
  await device.publishAsync(statusTopic('flood-1'), JSON.stringify({ schema: 1, deviceId: 'flood-1', online: false, since: new Date().toISOString() }), { qos: 1 });
  await waitFor(async () => (await server.server.ctx.store.engine.get('SELECT uptime_seconds FROM devices WHERE id = ?', ['flood-1']))?.uptime_seconds === 1019, 5000, 'the burst\'s last heartbeat');
  await waitFor(async () => writes.statuses === 1, 3000, 'the offline status written');
  const stored = (await (await server.request('GET', '/api/devices/flood-1')).json()) as { online: boolean; labels: object; heartbeat: { uptimeSeconds: number } };
  assert.equal(stored.online, false, 'the status sent after the heartbeats is the state that wins');
  assert.equal(stored.heartbeat.uptimeSeconds, 1019);
  assert.deepEqual(stored.labels, { site: 'osaka' }, 'labels come from enrollment only');
});
