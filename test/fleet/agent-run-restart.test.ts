import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeartbeatBuilder } from '../../agent/heartbeat.ts';
import { olderInSameRun, sameAgentRun } from '../../server/fleet/agent-run.ts';
import { telemetryTopic } from '../../shared/protocol/topics.ts';
import { enrolledDevice, fleetCounter, storedDevice, storedPredictions } from '../helpers/fleet-ingest-probe.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

const ACTIVE = { model: 'iris', version: '1', sha256: 'a'.repeat(64) };
const RUN_A = 'run-aaaaaaaaaaaa';
const RUN_B = 'run-bbbbbbbbbbbb';

const heartbeat = (deviceId: string, uptimeSeconds: number, predictions: number, runId?: string) =>
  JSON.stringify({
    schema: 1, deviceId, sentAt: new Date().toISOString(), uptimeSeconds, cpuPercent: 1, rssBytes: 1000,
    active: ACTIVE, candidate: null, previous: null, ...(runId === undefined ? {} : { runId }),
    serving: { predictions, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 },
  });

test('an agent restart whose first heartbeat already counts more than the last one stored (a longer uptime too) counts all of it, told by the new runId', async (t) => {
  const server = (await startTestServer(t))!;
  const device = await enrolledDevice(t, server, 'run-1');
  // Each heartbeat waits for the one before to be stored (within a second the throttle would replace it).
  const send = async (uptimeSeconds: number, predictions: number, runId?: string) => {
    await device.publishAsync(telemetryTopic('run-1'), heartbeat('run-1', uptimeSeconds, predictions, runId), { qos: 1 });
    await waitFor(async () => (await storedDevice(server, 'run-1')).heartbeat?.uptimeSeconds === uptimeSeconds, 10_000, `the heartbeat of uptime ${uptimeSeconds} stored`);
  };

  await send(30, 50, RUN_A);
  assert.equal(await storedPredictions(server, 'run-1'), 50);
  // The agent crashed after 30 s, came back, served 80 rows in 200 s before the server heard from it.
  await send(200, 80, RUN_B);
  assert.equal(await storedPredictions(server, 'run-1'), 130, '50 in the first run and 80 in the second');
  // Within the run, differences as before.
  await send(230, 95, RUN_B);
  assert.equal(await storedPredictions(server, 'run-1'), 145);
  // The API keeps showing the heartbeat as before (the run id stays internal).
  const view = await server.request('GET', '/api/devices/run-1');
  assert.equal(view.status, 200, await view.clone().text());
  assert.equal(((await view.json()) as { heartbeat: { uptimeSeconds: number } }).heartbeat.uptimeSeconds, 230);
});

test('agents without a runId are judged by their uptime as before; a runId on one side only does not count a run twice', async (t) => {
  const server = (await startTestServer(t))!;
  const device = await enrolledDevice(t, server, 'old-1');
  const send = async (uptimeSeconds: number, predictions: number, runId?: string) => {
    await device.publishAsync(telemetryTopic('old-1'), heartbeat('old-1', uptimeSeconds, predictions, runId), { qos: 1 });
    await waitFor(async () => (await storedDevice(server, 'old-1')).heartbeat?.uptimeSeconds === uptimeSeconds, 10_000, `the heartbeat of uptime ${uptimeSeconds} stored`);
  };
  await send(30, 50);
  await send(200, 80);
  assert.equal(await storedPredictions(server, 'old-1'), 80, 'no run id, uptime up: the same run');
  await send(5, 10);
  assert.equal(await storedPredictions(server, 'old-1'), 90, 'no run id, uptime down: a restart');
  // The heartbeat stored before the server (or the agent) learned run ids: judged by uptime, not taken for a restart.
  await send(60, 25, RUN_A);
  assert.equal(await storedPredictions(server, 'old-1'), 105);
});

test('a heartbeat of the same run delivered after a newer one is dropped (out-of-order): it neither sets the device back nor counts as a restart', async (t) => {
  const server = (await startTestServer(t))!;
  const device = await enrolledDevice(t, server, 'late-1');
  const send = async (uptimeSeconds: number, predictions: number, runId?: string) =>
    device.publishAsync(telemetryTopic('late-1'), heartbeat('late-1', uptimeSeconds, predictions, runId), { qos: 1 });
  const dropped = () => fleetCounter(server, 'fleetprune_fleet_dropped_messages_total', { kind: 'telemetry', reason: 'out-of-order' });
  await send(200, 80, RUN_A);
  await waitFor(async () => (await storedDevice(server, 'late-1')).heartbeat?.uptimeSeconds === 200, 10_000, 'the newer heartbeat stored');
  // The heartbeat the agent sent at 150 s arrives now (held by the throttle for the rest of the second, then judged).
  await send(150, 60, RUN_A);
  await waitFor(async () => (await dropped()) === 1, 10_000, 'the late heartbeat counted as dropped, out-of-order');
  assert.equal((await storedDevice(server, 'late-1')).heartbeat?.uptimeSeconds, 200, 'the stored heartbeat stays the newer one');
  assert.equal(await storedPredictions(server, 'late-1'), 80, 'its 60 predictions were counted already, in the 80');
  // The next heartbeat of the run counts its difference from the newest stored one.
  await send(230, 95, RUN_A);
  await waitFor(async () => (await storedDevice(server, 'late-1')).heartbeat?.uptimeSeconds === 230, 10_000, 'the next heartbeat stored');
  assert.equal(await storedPredictions(server, 'late-1'), 95);
});

test('olderInSameRun: only a lower uptime under the same run id is a late heartbeat; without run ids it stays a restart', () => {
  assert.equal(olderInSameRun({ uptimeSeconds: 200, runId: RUN_A }, { uptimeSeconds: 150, runId: RUN_A }), true);
  assert.equal(olderInSameRun({ uptimeSeconds: 200, runId: RUN_A }, { uptimeSeconds: 250, runId: RUN_A }), false);
  assert.equal(olderInSameRun({ uptimeSeconds: 200, runId: RUN_A }, { uptimeSeconds: 5, runId: RUN_B }), false);
  assert.equal(olderInSameRun({ uptimeSeconds: 200 }, { uptimeSeconds: 5 }), false);
  assert.equal(olderInSameRun(null, { uptimeSeconds: 5, runId: RUN_A }), false);
});

test('sameAgentRun: equal run ids are one run, different ones a restart; without both, the uptime decides', () => {
  assert.equal(sameAgentRun(null, { uptimeSeconds: 5, runId: RUN_A }), false);
  assert.equal(sameAgentRun({ uptimeSeconds: 30, runId: RUN_A }, { uptimeSeconds: 200, runId: RUN_B }), false);
  assert.equal(sameAgentRun({ uptimeSeconds: 30, runId: RUN_A }, { uptimeSeconds: 40, runId: RUN_A }), true);
  assert.equal(sameAgentRun({ uptimeSeconds: 30 }, { uptimeSeconds: 40 }), true);
  assert.equal(sameAgentRun({ uptimeSeconds: 30 }, { uptimeSeconds: 10 }), false);
  assert.equal(sameAgentRun({ uptimeSeconds: 30 }, { uptimeSeconds: 40, runId: RUN_A }), true);
  assert.equal(sameAgentRun({ uptimeSeconds: 30, runId: RUN_A }, { uptimeSeconds: 10 }), false);
});

test('the agent sends one runId in every heartbeat of a run, and another in the next run', () => {
  const slots = { active: null, candidate: null, previous: null };
  const serving = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };
  const first = new HeartbeatBuilder('dev-a', () => new Date());
  const runId = first.build(slots, serving).runId;
  assert.match(runId ?? '', /^[A-Za-z0-9_-]{8,64}$/);
  assert.equal(first.build(slots, serving).runId, runId);
  assert.notEqual(new HeartbeatBuilder('dev-a', () => new Date()).build(slots, serving).runId, runId);
});
