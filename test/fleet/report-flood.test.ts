import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import { reportsTopic } from '../../shared/protocol/topics.ts';
import { REPORT_BURST } from '../../server/fleet/report-rate-limit.ts';
import { dropped } from '../helpers/fleet-ingest-probe.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

const REFILL_MS = 1000;

async function deviceClient(t: TestContext, server: TestServer, id: string) {
  // The version its reports name, registered (the ingest takes benchmarks of registered versions only).
  await registerVersions(server.server.ctx.store, [{ model: 'iris', version: '2', sha256: 'a'.repeat(64) }]);
  const response = await server.request('POST', '/api/devices', { json: { id, labels: { site: 'osaka' } } });
  assert.equal(response.status, 201, await response.clone().text());
  const config = AgentConfigSchema.parse(await response.json());
  const client = await connectClient(config.broker.url, { clientId: id, username: id, password: config.broker.password });
  t.after(() => client.endAsync(true));
  const candidate = { model: 'iris', version: '2', sha256: 'a'.repeat(64), role: 'candidate', score: { accuracy: 0.9, correct: 9, total: 10 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 10 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 5, rssIncreaseBytes: 0 };
  /** Publishes benchmark report number `n` of this device (QoS 1, resolves at the broker's acknowledgement). */
  const publish = (n: number) =>
    client.publishAsync(
      reportsTopic(id),
      JSON.stringify({ schema: 1, id: `${id}-bench-${String(n).padStart(4, '0')}`, kind: 'benchmark', deviceId: id, createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 10, fingerprint: 'f', task: 'classification' }, active: null, candidate }),
      { qos: 1 },
    );
  /** Publishes an answer to assignment `assignmentId` (one the server never issued: dropped as `unknown-assignment`, once it is past the limit). */
  publish.answer = (assignmentId: string) =>
    client.publishAsync(
      reportsTopic(id),
      JSON.stringify({ schema: 1, id: `${id}-answer-${assignmentId}`, kind: 'assignment', deviceId: id, createdAt: new Date().toISOString(), assignmentId, outcome: 'activated', role: 'candidate', model: 'iris', version: '2', sha256: 'a'.repeat(64), reason: null }),
      { qos: 1 },
    );
  return publish;
}

const droppedMetric = (server: TestServer, reason: string) => dropped(server, 'reports', reason);

async function storedReports(server: TestServer, deviceId: string): Promise<number> {
  const row = await server.server.ctx.store.engine.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM device_reports WHERE device_id = ?', [deviceId]);
  return Number(row?.n ?? 0);
}

test('a device flooding reports gets its burst stored and the rest dropped and counted; another device is unaffected; a refill period later it reports again', async (t) => {
  const server = (await startTestServer(t, { start: { reportRateLimit: { refillMs: REFILL_MS } } }))!;
  const flood = await deviceClient(t, server, 'flood-1');
  const calm = await deviceClient(t, server, 'calm-1');

  const sent = 200;
  const started = Date.now();
  for (let i = 0; i < sent; i++) await flood(i);
  const elapsedMs = Date.now() - started;
  // Every report is either stored or counted as dropped.
  await waitFor(async () => (await storedReports(server, 'flood-1')) + (await droppedMetric(server, 'report-rate-limited')) === sent, 5000, 'every report stored or dropped');
  const stored = await storedReports(server, 'flood-1');
  // The bucket refills during the burst too: at most one more report per refill period it lasted.
  const bound = REPORT_BURST + Math.floor(elapsedMs / REFILL_MS) + 1; // + 1: the last ones may be read just after their acknowledgement
  t.diagnostic(`${sent} reports in ${elapsedMs} ms: ${stored} stored (bound ${bound})`);
  assert.ok(stored >= REPORT_BURST && stored <= bound, `${stored} of ${sent} reports stored in ${elapsedMs} ms`);
  assert.equal(await droppedMetric(server, 'report-rate-limited'), sent - stored);

  // Answers have a bucket of their own: with this one empty, an answer still reaches the ingest (which
  // drops this one for answering nothing the server issued, under its own reason).
  for (let i = 0; i < 3; i++) await flood.answer(`never-issued-${i}`);
  await waitFor(async () => (await droppedMetric(server, 'unknown-assignment')) === 3, 5000, 'the answers past the limiter');
  assert.equal(await droppedMetric(server, 'report-rate-limited'), sent - stored, 'no answer counted as rate-limited');

  // Another device's reports all land, while the flooding device is still limited.
  for (let i = 0; i < 5; i++) await calm(i);
  await waitFor(async () => (await storedReports(server, 'calm-1')) === 5, 5000, 'the calm device\'s reports stored');
  assert.equal(await droppedMetric(server, 'report-rate-limited'), sent - stored, 'nothing of the calm device dropped');

  // A refill period later the flooding device's next report is stored.
  await new Promise((resolve) => setTimeout(resolve, REFILL_MS + 100));
  await flood(sent);
  await waitFor(async () => (await storedReports(server, 'flood-1')) === stored + 1, 5000, 'the report after the refill stored');
  assert.equal(await droppedMetric(server, 'report-rate-limited'), sent - stored);
});

test('--report-burst and --report-refill-ms (server config) set the bucket; StartServerOptions.reportRateLimit overrides them field by field', async (t) => {
  const sent = 20;
  /** Floods `sent` reports from a fresh device and waits until each is stored or dropped; the stored count and how long the flood took. */
  const floodOf = async (server: TestServer, id: string) => {
    const publish = await deviceClient(t, server, id);
    const started = Date.now();
    for (let i = 0; i < sent; i++) await publish(i);
    const elapsedMs = Date.now() - started;
    await waitFor(async () => (await storedReports(server, id)) + (await droppedMetric(server, 'report-rate-limited')) === sent, 5000, `${id}: every report stored or dropped`);
    return { publish, stored: await storedReports(server, id), elapsedMs };
  };

  await t.test('a burst of 3, refilled once a minute: 3 of 20 stored', async (t) => {
    const server = (await startTestServer(t, { config: { reportBurst: 3, reportRefillMs: 60_000 } }))!;
    const { stored } = await floodOf(server, 'config-burst-1');
    assert.equal(stored, 3);
    assert.equal(await droppedMetric(server, 'report-rate-limited'), sent - 3);
  });

  await t.test('the options\' burst of 5 over the config\'s 3; the config\'s refill of 500 ms kept', async (t) => {
    const server = (await startTestServer(t, { config: { reportBurst: 3, reportRefillMs: 500 }, start: { reportRateLimit: { burst: 5 } } }))!;
    const { publish, stored, elapsedMs } = await floodOf(server, 'config-burst-2');
    const bound = 5 + Math.floor(elapsedMs / 500) + 1;
    assert.ok(stored >= 5 && stored <= bound, `${stored} of ${sent} stored in ${elapsedMs} ms (bound ${bound})`);
    // A refill period (500 ms, not the default 2 s) later, the next report is stored.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await publish(sent);
    await waitFor(async () => (await storedReports(server, 'config-burst-2')) === stored + 1, 5000, 'the report after the refill stored');
  });
});
