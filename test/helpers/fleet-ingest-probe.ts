import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import type { DeviceRecord } from '../../server/store/repositories/devices-repository.ts';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import type { TestServer } from '../server/helpers/test-server.ts';
import { connectClient } from './mqtt-clients.ts';

/**
 * What the fleet ingest tests look at on a running test server: enrolled devices connected over
 * MQTT, the fleet counters on /metrics, and the devices as stored.
 */

/** Enrolls `id` through the API and connects it to the server's embedded broker (closed after the test). */
export async function enrolledDevice(t: TestContext, server: TestServer, id: string): Promise<MqttClient> {
  const response = await server.request('POST', '/api/devices', { json: { id, labels: { cohort: 'pilot' } } });
  assert.equal(response.status, 201, await response.clone().text());
  const config = AgentConfigSchema.parse(await response.json());
  const client = await connectClient(config.broker.url, { clientId: id, username: id, password: config.broker.password });
  t.after(() => client.endAsync(true));
  return client;
}

/** The value of a counter sample on the server's /metrics (0 when absent), e.g. `fleetCounter(s, 'fleetprune_fleet_dropped_messages_total', {kind: 'reports', reason: 'retained'})`. */
export async function fleetCounter(server: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) found[key!] = value!;
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) sum += Number(match[3]);
  }
  return sum;
}

export const dropped = (server: TestServer, kind: string, reason: string) => fleetCounter(server, 'fleetprune_fleet_dropped_messages_total', { kind, reason });
export const accepted = (server: TestServer, kind: string) => fleetCounter(server, 'fleetprune_fleet_messages_total', { kind });

/** The device as the server stored it. */
export async function storedDevice(server: TestServer, id: string): Promise<DeviceRecord> {
  const device = await new FleetStore(server.server.ctx.store).repos.devices.get(id);
  assert.ok(device, `device ${id} is stored`);
  return device;
}

/** The predictions a device's stored served totals add up to. */
export async function storedPredictions(server: TestServer, id: string): Promise<number> {
  return (await storedDevice(server, id)).servingTotals.reduce((sum, total) => sum + total.predictions, 0);
}
