import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { FleetIngest } from '../../server/fleet/fleet-ingest.ts';
import { STATE_FLOOD_WARN_AFTER, StateThrottle } from '../../server/fleet/state-throttle.ts';
import type { Report, Status, Telemetry } from '../../shared/protocol/payloads.ts';
import { testLogger } from '../helpers/fleet-harness.ts';

/** Records what reaches the store, in order; `failing` makes the next writes throw. */
class RecordingIngest implements FleetIngest {
  readonly written: string[] = [];
  failing = 0;
  async ingestReport(report: Report) {
    this.written.push(`report:${report.id}`);
    return 'ingested' as const;
  }
  async recordTelemetry(telemetry: Telemetry) {
    if (this.failing > 0 && this.failing--) throw new Error('the store is down');
    this.written.push(`telemetry:${telemetry.uptimeSeconds}`);
    return 'recorded' as const;
  }
  async recordStatus(status: Status) {
    this.written.push(`status:${status.online}`);
    return 'recorded' as const;
  }
}

const telemetry = (uptimeSeconds: number) => ({ deviceId: 'd1', uptimeSeconds }) as Telemetry;
const report = (id: string) => ({ deviceId: 'd1', id, kind: 'benchmark' }) as Report;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function throttle(inner: FleetIngest, minIntervalMs = 200) {
  const dropped = new Counter({ name: 'dropped_total', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [new Registry()] });
  const count = async (reason: string) => (await dropped.get()).values.filter((value) => value.labels.reason === reason).reduce((sum, value) => sum + value.value, 0);
  return { throttle: new StateThrottle({ inner, dropped, logger: testLogger, minIntervalMs }), count };
}

test('a report first writes the heartbeat held for its device: the store sees the device\'s messages in order', async () => {
  const inner = new RecordingIngest();
  const { throttle: ingest, count } = throttle(inner);
  await ingest.recordTelemetry(telemetry(1));
  await ingest.recordTelemetry(telemetry(2));
  await ingest.recordTelemetry(telemetry(3));
  assert.deepEqual(inner.written, ['telemetry:1'], 'held within the interval');
  await ingest.ingestReport(report('r1'));
  assert.deepEqual(inner.written, ['telemetry:1', 'telemetry:3', 'report:r1']);
  assert.equal(await count('rate-limited'), 1, 'heartbeat 2 was replaced by 3');
  await sleep(500);
  assert.deepEqual(inner.written, ['telemetry:1', 'telemetry:3', 'report:r1'], 'nothing written twice');
});

test('held state is written at shutdown, and a held write that fails is tried again at the next interval', async () => {
  const inner = new RecordingIngest();
  const { throttle: ingest } = throttle(inner);
  await ingest.recordTelemetry(telemetry(1));
  await ingest.recordTelemetry(telemetry(2));
  inner.failing = 1;
  await sleep(300); // the interval ends: the write of 2 fails
  assert.deepEqual(inner.written, ['telemetry:1']);
  await sleep(300);
  assert.deepEqual(inner.written, ['telemetry:1', 'telemetry:2'], 'tried again');

  await ingest.recordTelemetry(telemetry(3));
  await ingest.recordStatus({ deviceId: 'd1', online: false } as Status);
  await ingest.flush();
  assert.deepEqual(inner.written.slice(2), ['telemetry:3', 'status:false']);
});

test('a status or two replaced in normal work is not a warning; a device flooding is, once per log window', async (t) => {
  const lines: { level: number; deviceId: string; supersededInWindow: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const dropped = new Counter({ name: 'dropped_total', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [new Registry()] });
  const ingest = new StateThrottle({ inner: new RecordingIngest(), dropped, logger, minIntervalMs: 10_000 });
  t.after(() => ingest.flush());
  const status = (deviceId: string, online: boolean) => ({ deviceId, online }) as Status;
  // An agent stopping: a heartbeat, then two statuses within the interval (one replaced).
  await ingest.recordTelemetry({ ...telemetry(1), deviceId: 'calm' });
  await ingest.recordStatus(status('calm', true));
  await ingest.recordStatus(status('calm', false));
  await ingest.recordStatus(status('calm', false));
  assert.equal(lines.length, 0, 'nothing at warn for a device that replaced a status or two');
  for (let i = 0; i < 3 * STATE_FLOOD_WARN_AFTER; i++) await ingest.recordTelemetry({ ...telemetry(i), deviceId: 'flood' });
  assert.equal(lines.length, 1, 'one warning in the window, however long the flood');
  assert.equal(lines[0]!.deviceId, 'flood');
  assert.equal(lines[0]!.supersededInWindow, STATE_FLOOD_WARN_AFTER);
});

test('deposed as the leader: what is held is dropped unwritten (counted, reason deposed), so nothing lands after the new leader read the store back', async () => {
  const inner = new RecordingIngest();
  const { throttle: ingest, count } = throttle(inner);
  await ingest.recordTelemetry(telemetry(1));
  await ingest.recordTelemetry(telemetry(2));
  await ingest.recordStatus({ deviceId: 'd1', online: false } as Status);
  ingest.discard();
  await sleep(500);
  assert.deepEqual(inner.written, ['telemetry:1'], 'the held heartbeat and status are not written');
  assert.equal(await count('deposed'), 2);
});

test('deposed: heartbeats and statuses still coming in (the broker connection winding down) are dropped too, until elected again', async () => {
  const inner = new RecordingIngest();
  const { throttle: ingest, count } = throttle(inner);
  ingest.discard();
  assert.equal(await ingest.recordTelemetry(telemetry(7)), 'held', 'counted here, not by the receiver');
  await ingest.recordStatus({ deviceId: 'd2', online: true } as Status);
  await sleep(300);
  assert.deepEqual(inner.written, [], 'nothing written after the deposition');
  assert.equal(await count('deposed'), 2);
  ingest.resume();
  await ingest.recordTelemetry(telemetry(8));
  assert.deepEqual(inner.written, ['telemetry:8'], 'written again once elected');
});
