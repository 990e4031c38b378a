import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { SILENT_SWEEP_MS, SilentDeviceSweep, silentAfterMs } from '../../server/fleet/silent-device-sweep.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';
import type { Telemetry } from '../../shared/protocol/payloads.ts';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import { createLogger } from '../../shared/util/log.ts';
import { engineMissing } from '../helpers/engines.ts';
import { fleetCounter, storedDevice } from '../helpers/fleet-ingest-probe.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { collectMessages, connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { DEFAULT_SERVER_USERNAME } from '../../server/broker/credential-store.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';
import { startTestServer } from '../server/helpers/test-server.ts';

const heartbeat = (deviceId: string, sentAt: Date, intervalSeconds?: number): Telemetry => ({
  schema: 1,
  deviceId,
  sentAt: sentAt.toISOString(),
  uptimeSeconds: 1,
  cpuPercent: 1,
  rssBytes: 1,
  active: null,
  candidate: null,
  previous: null,
  ...(intervalSeconds !== undefined ? { intervalSeconds } : {}),
});

test('silence allowed: three heartbeat intervals, and never less than a minute', () => {
  assert.equal(silentAfterMs(30), 90_000);
  assert.equal(silentAfterMs(5), 60_000);
  assert.equal(silentAfterMs(0.5, 0), 1_500);
});

for (const engine of STORE_ENGINES) {
  describe(`silent devices on ${engine}`, () => {
    test('a device silent for three of its heartbeat intervals is marked offline, one heard from meanwhile is not, one that never said its interval never is; its next heartbeat brings it back and wakes its rollouts', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        const fleet = new FleetStore(store);
        for (const id of ['dev-a', 'dev-b', 'dev-old', 'dev-gone']) {
          await fleet.repos.devices.insert({ id, labels: {}, secretHash: 'x', tokenId: `tok-${id}`, enrolledAt: '2026-01-01T00:00:00.000Z', enrolledBy: 'test' });
        }
        let now = new Date('2026-01-01T10:00:00.000Z');
        const woken: string[] = [];
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => now, onDeviceOnline: (id) => woken.push(id) });
        const log = recordingLogger();
        const sweep = new SilentDeviceSweep({ devices: fleet.repos.devices, log: log.logger, listening: () => true, now: () => now.getTime() });
        const online = async () => (await fleet.repos.devices.list()).filter((device) => device.online).map((device) => device.id);

        // An agent that predates intervalSeconds is online by its status alone.
        assert.equal(await ingest.recordStatus({ schema: 1, deviceId: 'dev-old', online: true, since: now.toISOString() }), 'recorded');
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-a', now, 30)), 'recorded');
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-b', now, 30)), 'recorded');
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-old', now)), 'recorded');
        // A heartbeat without an interval does not show a device online (nothing would take it back).
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-gone', now)), 'recorded');
        assert.equal((await fleet.repos.devices.get('dev-a'))?.heartbeat?.intervalSeconds, 30, 'the interval is kept with the device');
        assert.deepEqual(await online(), ['dev-a', 'dev-b', 'dev-old']);

        now = new Date('2026-01-01T10:01:30.000Z'); // 90 s: not more than three intervals yet
        assert.deepEqual(await sweep.sweep(), []);
        now = new Date('2026-01-01T10:01:00.000Z');
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-b', now, 30)), 'recorded');
        now = new Date('2026-01-01T10:01:31.000Z');
        assert.deepEqual(await sweep.sweep(), ['dev-a']);
        assert.deepEqual(await online(), ['dev-b', 'dev-old']);
        assert.match(log.lines.map((line) => line.msg).join('\n'), /^device dev-a marked offline: last heard 91 s ago, at 2026-01-01T10:00:00\.000Z \(it heartbeats every 30 s\)$/m);
        // A day later: dev-b goes too; the agent that never said its interval stays as its status left it.
        now = new Date('2026-01-02T10:00:00.000Z');
        assert.deepEqual(await sweep.sweep(), ['dev-b']);
        assert.deepEqual(await online(), ['dev-old']);

        // Heard from between the list and the write: not marked.
        const seen = (await fleet.repos.devices.get('dev-a'))!.lastSeen!;
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-a', now, 30)), 'recorded');
        assert.equal(await fleet.repos.devices.markSilent('dev-a', seen), false);
        assert.deepEqual(await online(), ['dev-a', 'dev-old']);
        assert.deepEqual(woken, ['dev-old', 'dev-a', 'dev-b', 'dev-a'], 'a status, and each heartbeat with an interval of a device shown offline, says it is back; one of a device already online does not');

        // Marked offline between a heartbeat's read and its write: the write is refused (read it
        // again), so the heartbeat that follows tells the device is back.
        const read = (await fleet.repos.devices.get('dev-a'))!;
        assert.equal(read.online, true);
        now = new Date('2026-01-03T10:00:00.000Z');
        assert.deepEqual(await sweep.sweep(), ['dev-a']);
        assert.equal(await fleet.repos.devices.recordTelemetry(heartbeat('dev-a', now, 30), now.toISOString(), { totals: read.servingTotals, after: read }), false);
        assert.equal(await ingest.recordTelemetry(heartbeat('dev-a', now, 30)), 'recorded');
        assert.deepEqual(woken.slice(-1), ['dev-a']);
      });
    });
  });
}

/** A wall clock and a monotonic one for a sweep; `pass` moves both in rounds of `everyMs`, as time passing does. */
function sweepClocks(start: string) {
  const clock = { wall: Date.parse(start), mono: 0 };
  return {
    clock,
    options: { now: () => clock.wall, monotonic: () => clock.mono, everyMs: SILENT_SWEEP_MS },
    /** `ms` of time passing, one round every SILENT_SWEEP_MS. */
    async pass(sweep: SilentDeviceSweep, ms: number): Promise<string[]> {
      const marked: string[] = [];
      for (let left = ms; left > 0; left -= SILENT_SWEEP_MS) {
        const step = Math.min(left, SILENT_SWEEP_MS);
        clock.wall += step;
        clock.mono += step;
        marked.push(...(await sweep.round()));
      }
      return marked;
    },
  };
}

test('silence counts only from when the server could hear: a server whose broker connection was down marks no device offline for the outage itself', async (t) => {
  await withFreshStore(t, 'sqlite', async (store) => {
    const fleet = new FleetStore(store);
    await fleet.repos.devices.insert({ id: 'dev-a', labels: {}, secretHash: 'x', tokenId: 'tok-dev-a', enrolledAt: '2026-01-01T00:00:00.000Z', enrolledBy: 'test' });
    const time = sweepClocks('2026-01-01T10:00:00.000Z');
    const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => new Date(time.clock.wall) });
    assert.equal(await ingest.recordTelemetry(heartbeat('dev-a', new Date(time.clock.wall), 30)), 'recorded');
    let listening = false;
    const sweep = new SilentDeviceSweep({ devices: fleet.repos.devices, log: createLogger('test', 'silent'), listening: () => listening, ...time.options });
    // An hour of outage: nothing is judged while the server does not hear the devices.
    assert.deepEqual(await time.pass(sweep, 3_600_000), []);
    // Back: the device has three intervals from the first round that hears before it counts as silent.
    listening = true;
    assert.deepEqual(await time.pass(sweep, 105_000), [], 'not marked offline for the outage');
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a'], 'marked offline after three intervals of silence once listening');
  });
});

test('a round that fails, a server that stalled or whose clock stepped, or a break it is told of (broker back, a heartbeat not stored) starts the silence afresh', async (t) => {
  await withFreshStore(t, 'sqlite', async (store) => {
    const fleet = new FleetStore(store);
    await fleet.repos.devices.insert({ id: 'dev-a', labels: {}, secretHash: 'x', tokenId: 'tok-dev-a', enrolledAt: '2026-01-01T00:00:00.000Z', enrolledBy: 'test' });
    const time = sweepClocks('2026-01-01T10:00:00.000Z');
    const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => new Date(time.clock.wall) });
    const beat = async () => assert.equal(await ingest.recordTelemetry(heartbeat('dev-a', new Date(time.clock.wall), 30)), 'recorded');
    let failing = false;
    const devices = {
      onlineWithInterval: async (before: string) => {
        if (failing) throw new Error('the store is down');
        return fleet.repos.devices.onlineWithInterval(before);
      },
      markSilent: (id: string, seen: string) => fleet.repos.devices.markSilent(id, seen),
    };
    const log = recordingLogger();
    const sweep = new SilentDeviceSweep({ devices, log: log.logger, listening: () => true, ...time.options });
    await beat();
    await sweep.round();

    // Told of a break 60 s in: silence counts from the break, not from the last heartbeat.
    await time.pass(sweep, 60_000);
    sweep.heardNothingUntilNow();
    assert.deepEqual(await time.pass(sweep, 90_000), [], 'silence counts from the break');
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a'], 'then it counts');
    assert.match(log.lines.at(-1)!.msg, /^device dev-a marked offline: last heard 165 s ago, at 2026-01-01T10:00:00\.000Z \(it heartbeats every 30 s\); this server has been hearing the devices for 105 s of it$/);

    // A round that fails: the store may have failed heartbeats too.
    await beat();
    await time.pass(sweep, 45_000);
    failing = true;
    await time.pass(sweep, 15_000);
    failing = false;
    assert.deepEqual(await time.pass(sweep, 105_000), [], 'silence counts from the first round after the failure');
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a']);

    // The server stalls for five minutes (its event loop blocked): both clocks move, no round ran.
    await beat();
    time.clock.wall += 300_000;
    time.clock.mono += 300_000;
    assert.deepEqual(await sweep.round(), [], 'a stall is not silence');
    assert.deepEqual(await time.pass(sweep, 90_000), []);
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a']);

    // Its wall clock steps an hour ahead between two rounds (NTP, a resume from suspend).
    await beat();
    time.clock.wall += 3_600_000;
    assert.deepEqual(await time.pass(sweep, 15_000), [], 'a clock step is not silence');
    assert.deepEqual(await time.pass(sweep, 90_000), []);
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a'], 'marked offline three intervals after the step');
  });
});

test("a device whose heartbeat could not be stored has its silence start afresh, and only that device's", async (t) => {
  await withFreshStore(t, 'sqlite', async (store) => {
    const fleet = new FleetStore(store);
    for (const id of ['dev-a', 'dev-b']) await fleet.repos.devices.insert({ id, labels: {}, secretHash: 'x', tokenId: `tok-${id}`, enrolledAt: '2026-01-01T00:00:00.000Z', enrolledBy: 'test' });
    const time = sweepClocks('2026-01-01T10:00:00.000Z');
    const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => new Date(time.clock.wall) });
    for (const id of ['dev-a', 'dev-b']) assert.equal(await ingest.recordTelemetry(heartbeat(id, new Date(time.clock.wall), 30)), 'recorded');
    const sweep = new SilentDeviceSweep({ devices: fleet.repos.devices, log: createLogger('test', 'silent'), listening: () => true, ...time.options });
    await sweep.round();
    await time.pass(sweep, 60_000);
    sweep.heardNothingUntilNow('dev-a'); // dev-a's heartbeat came, but the store failed it
    assert.deepEqual(await time.pass(sweep, 45_000), ['dev-b'], 'dev-b silent 105 s: marked; dev-a not yet');
    assert.deepEqual(await time.pass(sweep, 45_000), []);
    assert.deepEqual(await time.pass(sweep, 15_000), ['dev-a'], 'dev-a 105 s after its failed write');
  });
});

/**
 * The case the sweep is for: a device that dies while the external broker is down publishes no
 * last will, and a broker with persistence comes back holding its retained `online: true`, which
 * it hands the server again. Without the sweep the device shows online for ever.
 */
test('external Mosquitto: a device that died while the broker was down is shown offline once silent, and online again when it heartbeats', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-silent-device-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  // Restarted with persistence, as deploy/mosquitto runs it; the server reloads it through the pid file.
  const restart = async () => {
    await mosquitto.start(['persistence true', `persistence_location ${mosquitto.dir}/`]);
    await writeFile(pidFile, `${mosquitto.pid}\n`);
  };
  await mosquitto.stop({ keepFiles: true });
  await restart();
  const server = (await startTestServer(t, {
    config: { mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile },
    start: { silentDevices: { everyMs: 100, minMs: 0 } },
  }))!;
  const connectedMetric = () => fleetCounter(server, PROTOCOL_METRICS.brokerConnected);
  await waitFor(async () => (await connectedMetric()) === 1, 15_000, 'the server connected to the broker');

  const response = await server.request('POST', '/api/devices', { json: { id: 'field-1', labels: { cohort: 'pilot' } } });
  assert.equal(response.status, 201, await response.clone().text());
  const { broker } = AgentConfigSchema.parse(await response.json());
  const connect = () => connectClient(broker.url, { clientId: 'field-1', username: 'field-1', password: broker.password });
  const device = await connect();
  const since = new Date().toISOString();
  await device.publishAsync(statusTopic('field-1'), Buffer.from(JSON.stringify({ schema: 1, deviceId: 'field-1', online: true, since })), { qos: 1, retain: true });
  await device.publishAsync(telemetryTopic('field-1'), Buffer.from(JSON.stringify(heartbeat('field-1', new Date(), 0.5))), { qos: 1 });
  await waitFor(async () => (await storedDevice(server, 'field-1')).heartbeat?.intervalSeconds === 0.5, 10_000, 'field-1 online with its interval');
  assert.equal((await storedDevice(server, 'field-1')).online, true);

  // The broker goes down, and the device dies meanwhile: nobody publishes its last will.
  await mosquitto.stop({ keepFiles: true });
  device.end(true);
  await waitFor(async () => (await connectedMetric()) === 0, 10_000, 'the server lost the broker');
  await restart();
  await waitFor(async () => (await connectedMetric()) === 1, 15_000, 'the server connected to the broker again');
  await waitFor(async () => (await storedDevice(server, 'field-1')).online === false, 10_000, 'field-1 shown offline once silent');
  assert.equal(await fleetCounter(server, PROTOCOL_METRICS.devicesOnline), 0);
  assert.equal(await fleetCounter(server, PROTOCOL_METRICS.devicesMarkedSilent), 1);
  // Its retained `online` was cleared from the broker: the next subscription (a broker or server
  // restart) does not hand it over and show the dead device online once more.
  const reader = await connectClient(mosquitto.url, { clientId: 'silent-test-reader', username: DEFAULT_SERVER_USERNAME, password });
  t.after(() => reader.endAsync(true));
  const retained = (await collectMessages(reader, statusTopic('field-1'), 1000)).filter((message) => message.payload.length > 0);
  assert.deepEqual(retained.map((message) => message.payload.toString()), [], 'no retained status left for field-1');

  // It comes back: its first heartbeat says so (QoS 0, it may come before its status).
  const back = await connect();
  t.after(() => back.endAsync(true));
  await back.publishAsync(telemetryTopic('field-1'), Buffer.from(JSON.stringify(heartbeat('field-1', new Date(), 0.5))), { qos: 0 });
  await waitFor(async () => (await storedDevice(server, 'field-1')).online, 10_000, 'field-1 online again');
  assert.equal(await fleetCounter(server, PROTOCOL_METRICS.devicesOnline), 1);
});
