import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { reportsTopic } from '../../shared/protocol/topics.ts';
import { dropped, enrolledDevice } from '../helpers/fleet-ingest-probe.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { registerVersions } from '../helpers/registered-versions.ts';

const BURST = 5;

/** An answer (assignment report) with a fresh id to an assignment the server never issued: past the limiter, the ingest drops it as `unknown-assignment`. */
const answer = (device: MqttClient, deviceId: string, n: number) =>
  device.publishAsync(
    reportsTopic(deviceId),
    JSON.stringify({ schema: 1, id: `${deviceId}-answer-${String(n).padStart(4, '0')}`, kind: 'assignment', deviceId, createdAt: new Date().toISOString(), assignmentId: `never-issued-${n}`, outcome: 'activated', role: 'candidate', model: 'iris', version: '2', sha256: 'a'.repeat(64), reason: null }),
    { qos: 1 },
  );

const benchmark = (device: MqttClient, deviceId: string, id: string) =>
  device.publishAsync(
    reportsTopic(deviceId),
    JSON.stringify({
      schema: 1, id, kind: 'benchmark', deviceId, createdAt: new Date().toISOString(), assignmentId: null, holdout: { rows: 10, fingerprint: 'f', task: 'classification' }, active: null,
      candidate: { model: 'iris', version: '2', sha256: 'a'.repeat(64), role: 'candidate', score: { accuracy: 0.9, correct: 9, total: 10 }, latencyMs: { p50: 1, p95: 2, p99: 3, samples: 10 }, batchSize: 1, throughputRowsPerSecond: 100, loadTimeMs: 5, rssIncreaseBytes: 0 },
    }),
    { qos: 1 },
  );

async function storedReports(server: TestServer, deviceId: string): Promise<number> {
  const row = await server.server.ctx.store.engine.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM device_reports WHERE device_id = ?', [deviceId]);
  return Number(row?.n ?? 0);
}

test('a device flooding answers gets its burst through and the rest dropped and counted (answer-rate-limited); its benchmark reports and other devices are unaffected', async (t) => {
  // A bucket that does not refill during the test: exactly BURST answers pass.
  const server = (await startTestServer(t, { start: { answerRateLimit: { burst: BURST, refillMs: 3_600_000 } } }))!;
  // The version the benchmark reports name, registered (the ingest takes benchmarks of registered versions only).
  await registerVersions(server.server.ctx.store, [{ model: 'iris', version: '2', sha256: 'a'.repeat(64) }]);
  const flood = await enrolledDevice(t, server, 'answers-1');
  const calm = await enrolledDevice(t, server, 'answers-2');

  const sent = 100;
  for (let i = 0; i < sent; i++) await answer(flood, 'answers-1', i);
  await waitFor(async () => (await dropped(server, 'reports', 'unknown-assignment')) + (await dropped(server, 'reports', 'answer-rate-limited')) === sent, 10_000, 'every answer passed or dropped');
  assert.equal(await dropped(server, 'reports', 'unknown-assignment'), BURST, 'the burst reaches the ingest (which drops these for answering nothing issued)');
  assert.equal(await dropped(server, 'reports', 'answer-rate-limited'), sent - BURST, 'the rest dropped before the store, counted');
  assert.equal(await dropped(server, 'reports', 'report-rate-limited'), 0);

  // The benchmark bucket is a separate one: the flooding device's benchmark report is stored.
  await benchmark(flood, 'answers-1', 'answers-1-bench-0001');
  await waitFor(async () => (await storedReports(server, 'answers-1')) === 1, 10_000, 'the benchmark report stored');
  // Another device's answers pass.
  for (let i = 0; i < 3; i++) await answer(calm, 'answers-2', i);
  await waitFor(async () => (await dropped(server, 'reports', 'unknown-assignment')) === BURST + 3, 10_000, 'the other device\'s answers past the limiter');
  assert.equal(await dropped(server, 'reports', 'answer-rate-limited'), sent - BURST);
});
