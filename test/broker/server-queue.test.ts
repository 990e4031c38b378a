import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { reportsTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { engineMissing } from '../helpers/engines.ts';
import { startFleetHarness, testLogger } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient } from '../helpers/mqtt-clients.ts';

/**
 * Mosquitto queues QoS 1 messages for the server's persistent session while the server is away,
 * up to max_queued_messages, and drops every message beyond it while still acknowledging it to
 * the device, which then deletes it from its outbox. Heartbeats (cumulative, the latest says it
 * all) must not take that room from the reports and answers a rollout waits for.
 */
test('Mosquitto: heartbeats published while the server is away do not fill its queue; the report after them still reaches it', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const mosquitto = await MosquittoProcess.create(binary);
  t.after(() => mosquitto.stop());
  const queueLimit = 5;
  const brokerFor = (credentials: Parameters<Parameters<typeof startFleetHarness>[0]>[0], server: Parameters<Parameters<typeof startFleetHarness>[0]>[1]) =>
    new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger, mosquittoAuth: { dir: mosquitto.authDir, reload: () => mosquitto.reload() } });
  const first = await startFleetHarness(async (credentials, server) => {
    await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
    await mosquitto.start([`max_queued_messages ${queueLimit}`]);
    return brokerFor(credentials, server);
  });
  // Stopped in cleanup too (bounded by an unref'd timer, which does not hold the process up; a second stop() returns at once): its client left reconnecting after a failure keeps the process alive.
  t.after(() => Promise.race([first.stop(), delay(6000, undefined, { ref: false })]));
  const { publicKey } = generateKeyPairSync('ed25519');
  const config = await first.enroll('m-3', { url: 'http://127.0.0.1:1', token: 't', publicKey });
  await first.stop();

  const device = await connectClient(config.broker.url, { clientId: 'm-3', username: 'm-3', password: config.broker.password });
  t.after(() => device.endAsync(true));
  const now = () => new Date().toISOString();
  for (let i = 0; i < 4 * queueLimit; i += 1) {
    const heartbeat = { schema: 1, deviceId: 'm-3', sentAt: now(), uptimeSeconds: i, cpuPercent: 1, rssBytes: 1000, active: null, candidate: null, previous: null };
    await device.publishAsync(telemetryTopic('m-3'), Buffer.from(JSON.stringify(heartbeat)), { qos: 1 });
  }
  const answer = {
    schema: 1, id: 'answer-after-heartbeats', kind: 'assignment', deviceId: 'm-3', createdAt: now(),
    assignmentId: 'assign-0001', outcome: 'activated', role: 'active', model: 'iris', version: '1', sha256: 'a'.repeat(64), reason: null,
  };
  await device.publishAsync(reportsTopic('m-3'), Buffer.from(JSON.stringify(answer)), { qos: 1 });

  // The server comes back: same identity, same persistent session.
  const second = await startFleetHarness(async () => brokerFor(first.credentials, first.server));
  t.after(() => second.stop());
  const received = await second.ingest.waitForReport((report) => report.id === 'answer-after-heartbeats', 10_000);
  assert.equal(received.kind, 'assignment');
  assert.equal(second.ingest.telemetry.has('m-3'), false, 'the heartbeats sent while the server was away were not queued for it');
});
