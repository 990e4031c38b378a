import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { Broker } from '../../server/broker/broker.ts';
import { DroppedMessageLog } from '../../shared/util/dropped-message-log.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import { InMemoryFleetIngest } from '../../server/fleet/in-memory-fleet-ingest.ts';
import { reportsTopic, telemetryTopic } from '../../shared/protocol/topics.ts';

function recording() {
  const lines: Record<string, any>[] = [];
  return { lines, logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }) };
}

test('a device sending nothing but malformed messages gets one warn line, not one per message; each one is still counted, and other devices are logged on their own', async () => {
  const { lines, logger } = recording();
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'], registers: [registry] });
  const receiver = new FleetReceiver({ broker: {} as Broker, ingest: new InMemoryFleetIngest(), logger, dropped });
  for (let i = 0; i < 500; i += 1) await receiver.handle(telemetryTopic('osaka-1'), Buffer.from(`{"not json ${i}`));
  await receiver.handle(reportsTopic('kyoto-1'), Buffer.from('[]'));
  const warned = lines.filter((line) => line.level === 40);
  assert.deepEqual(warned.map((line) => [line.msg, line.topic]), [
    ['dropped a device message', telemetryTopic('osaka-1')],
    ['dropped a device message', reportsTopic('kyoto-1')],
  ]);
  const counted = (await dropped.get()).values.reduce((sum, value) => sum + value.value, 0);
  assert.equal(counted, 501);
});

test('the next line for a device, a minute on at the earliest, says how many were dropped since', () => {
  const { lines, logger } = recording();
  let now = 0;
  const log = new DroppedMessageLog(logger, { now: () => now });
  const device = 'osaka-1';
  log.dropped(device, { reason: 'invalid-json' }, 'dropped a device message');
  for (now = 1; now < 60_000; now += 1000) log.dropped(device, { reason: 'invalid-json' }, 'dropped a device message');
  assert.equal(lines.length, 1);
  now = 60_000;
  log.dropped(device, { reason: 'too-large' }, 'dropped a device message');
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.droppedSinceLastLine, 60);
  assert.equal(lines[1]!.reason, 'too-large');
  assert.match(lines[1]!.msg, /^dropped a device message \(and 60 more from this device since the last such line; at most one line a minute per device\)$/);
});

test('20,000 devices dropping every 30 s are each logged once a minute (their windows are not evicted before their next drop)', () => {
  let lines = 0;
  const logger = { warn: () => void (lines += 1) } as unknown as ConstructorParameters<typeof DroppedMessageLog>[0];
  let now = 0;
  const log = new DroppedMessageLog(logger, { now: () => now });
  for (let round = 0; round < 4; round += 1, now += 30_000) {
    for (let device = 0; device < 20_000; device += 1) log.dropped(`dev-${device}`, {}, 'dropped a device message');
  }
  assert.equal(lines, 40_000, 'two lines per device over two minutes, not four');
});
