import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import { accepted, dropped, enrolledDevice, storedDevice } from '../helpers/fleet-ingest-probe.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

const DEVICE = 'revoked-1';
const ACTIVE = { model: 'iris', version: '1', sha256: 'a'.repeat(64) };

const heartbeat = (uptimeSeconds: number, predictions: number) =>
  JSON.stringify({
    schema: 1, deviceId: DEVICE, sentAt: new Date().toISOString(), uptimeSeconds, cpuPercent: 1, rssBytes: 1000,
    active: ACTIVE, candidate: null, previous: null,
    serving: { predictions, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 },
  });
const status = (online: boolean) => JSON.stringify({ schema: 1, deviceId: DEVICE, online, since: new Date().toISOString() });

test('heartbeats and statuses of a revoked device (in flight at its revocation) are dropped as unknown-device, not accepted, and change nothing stored', async (t) => {
  const server = (await startTestServer(t))!;
  const device = await enrolledDevice(t, server, DEVICE);

  await device.publishAsync(statusTopic(DEVICE), status(true), { qos: 1 });
  await device.publishAsync(telemetryTopic(DEVICE), heartbeat(10, 5), { qos: 1 });
  // The second of the two may be held by the 1 s throttle: both are counted once written.
  await waitFor(async () => (await accepted(server, 'telemetry')) === 1 && (await accepted(server, 'status')) === 1, 10_000, 'the live device\'s heartbeat and status accepted');
  await waitFor(async () => (await storedDevice(server, DEVICE)).heartbeat?.uptimeSeconds === 10, 10_000, 'the heartbeat stored');

  // Revoked in the store; the broker has not disconnected the device yet (what is in flight at a
  // revocation, or what an external broker still lets through until its files are rewritten).
  assert.ok(await new FleetStore(server.server.ctx.store).repos.devices.revoke(DEVICE, new Date().toISOString()));
  const before = await storedDevice(server, DEVICE);

  await device.publishAsync(telemetryTopic(DEVICE), heartbeat(20, 50), { qos: 1 });
  await device.publishAsync(statusTopic(DEVICE), status(true), { qos: 1 });
  await device.publishAsync(telemetryTopic(DEVICE), heartbeat(30, 70), { qos: 1 });
  // Written at once or held a second: each is dropped when the store refuses it, the throttle may
  // also replace a held heartbeat by the next one (rate-limited). Every message is counted once.
  await waitFor(
    async () => (await dropped(server, 'telemetry', 'unknown-device')) + (await dropped(server, 'telemetry', 'rate-limited')) === 2 && (await dropped(server, 'status', 'unknown-device')) === 1,
    10_000,
    'the revoked device\'s messages counted as dropped, reason unknown-device',
  );
  assert.ok((await dropped(server, 'telemetry', 'unknown-device')) >= 1);
  assert.equal(await accepted(server, 'telemetry'), 1, 'no heartbeat of the revoked device counted as accepted');
  assert.equal(await accepted(server, 'status'), 1, 'no status of the revoked device counted as accepted');
  assert.deepEqual(await storedDevice(server, DEVICE), before, 'the revoked device\'s stored state is unchanged');
  assert.equal(before.online, false, 'revoked: offline');
});
