import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { ROLLOUT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';

async function metric(server: TestServer, name: string): Promise<number | undefined> {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${server.baseUrl}/metrics`)).text());
  return match ? Number(match[1]) : undefined;
}

/**
 * The leadership (fleetprune_fleet_broker_active) stays with a server whose external broker went
 * away, so FleetpruneNoServerOnBroker needs the connection itself: fleetprune_fleet_broker_connected
 * follows the server's MQTT connection to the broker, down and back up.
 */
test('fleetprune_fleet_broker_connected: 0 while the external broker is gone (the server still holds the broker side), 1 once it is back', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-broker-connected-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile } }))!;
  await waitFor(async () => (await metric(server, PROTOCOL_METRICS.brokerConnected)) === 1, 15_000, 'the server connected to the broker');
  assert.equal(await metric(server, PROTOCOL_METRICS.brokerActive), 1, 'holding the broker side');

  await mosquitto.stop({ keepFiles: true });
  await waitFor(async () => (await metric(server, PROTOCOL_METRICS.brokerConnected)) === 0, 10_000, 'fleetprune_fleet_broker_connected 0 with the broker gone');
  assert.equal(await metric(server, PROTOCOL_METRICS.brokerActive), 1, 'the server still holds the broker side (it reconnects)');

  await mosquitto.start();
  await waitFor(async () => (await metric(server, PROTOCOL_METRICS.brokerConnected)) === 1, 15_000, 'fleetprune_fleet_broker_connected 1 once the broker is back');
});

test('fleetprune_fleet_broker_connected is 1 with the embedded broker', async (t) => {
  const server = (await startTestServer(t))!;
  assert.equal(await metric(server, PROTOCOL_METRICS.brokerActive), 1);
  assert.equal(await metric(server, PROTOCOL_METRICS.brokerConnected), 1);
  assert.equal(await metric(server, ROLLOUT_METRICS.leader), 1, 'the single server drives the rollouts');
  assert.equal(await metric(server, ROLLOUT_METRICS.takeovers), 1);
});

test('a server started while its external broker is down holds the broker side (broker_active 1) and says it is not connected, in /metrics and the devices list, rather than as a standby would (connected: null)', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-broker-down-at-start-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  await mosquitto.stop({ keepFiles: true });
  const server = (await startTestServer(t, { config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile } }))!;
  await waitFor(async () => (await metric(server, PROTOCOL_METRICS.brokerActive)) === 1, 15_000, 'the leader to hold the broker side while it connects');
  assert.equal(await metric(server, PROTOCOL_METRICS.brokerConnected), 0);
  const devices = (await (await server.request('GET', '/api/devices')).json()) as { broker?: { connected: boolean | null } };
  assert.equal(devices.broker?.connected, false, 'not connected, not "a standby"');
  // It drives the rollouts all the same: rollout commands, a rollback above all, are taken and wait for the broker.
  await waitFor(async () => (await metric(server, ROLLOUT_METRICS.leader)) === 1, 15_000, 'the server to drive the rollouts while its broker is down');
});
