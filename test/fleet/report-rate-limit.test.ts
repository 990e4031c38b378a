import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { REPORT_BURST, REPORT_REFILL_MS, ReportRateLimit } from '../../server/fleet/report-rate-limit.ts';

function limiter(options: { maxDevices?: number; logEveryMs?: number } = {}) {
  let clock = 1_000_000;
  const dropped = new Counter({ name: 'dropped_total', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [new Registry()] });
  const lines: Record<string, any>[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, any>) });
  const limit = new ReportRateLimit({ dropped, logger, now: () => clock, ...options });
  const count = async () => (await dropped.get()).values.find((value) => value.labels.kind === 'reports' && value.labels.reason === 'report-rate-limited')?.value ?? 0;
  return { limit, count, lines, advance: (ms: number) => (clock += ms) };
}

const admitted = (limit: ReportRateLimit, deviceId: string, n: number) => Array.from({ length: n }, () => limit.admit(deviceId)).filter(Boolean).length;

test('a device gets its burst at once, then one report per refill period; another device is unaffected', async () => {
  const { limit, count, advance } = limiter();
  assert.equal(admitted(limit, 'd1', 200), REPORT_BURST, 'the burst, and nothing more');
  assert.equal(await count(), 200 - REPORT_BURST, 'the others counted as report-rate-limited');
  assert.equal(admitted(limit, 'd2', REPORT_BURST), REPORT_BURST, 'another device has a bucket of its own');
  advance(REPORT_REFILL_MS - 1);
  assert.equal(limit.admit('d1'), false, 'not refilled yet');
  advance(1);
  assert.equal(limit.admit('d1'), true, 'one token back after a refill period');
  assert.equal(limit.admit('d1'), false);
  advance(REPORT_REFILL_MS * 1000);
  assert.equal(admitted(limit, 'd1', 100), REPORT_BURST, 'a quiet device refills up to the burst, no more');
  advance(-60_000); // the clock stepped back: no refill, and nothing breaks
  assert.equal(limit.admit('d1'), false);
});

test('a limited device is logged at once, then at most once per minute with how many were dropped', async () => {
  const { limit, lines, advance } = limiter({ logEveryMs: 100 });
  admitted(limit, 'd1', REPORT_BURST + 50);
  assert.equal(lines.length, 1, 'the first drop is logged at once');
  assert.equal(lines[0]!.deviceId, 'd1');
  assert.equal(lines[0]!.droppedSinceLastLine, 1);
  await new Promise((resolve) => setTimeout(resolve, 200)); // the window ends: one line for the rest
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.droppedSinceLastLine, 49);
  advance(50);
  admitted(limit, 'd1', 5); // the line above opened a new window: held for its end, or written at close
  assert.equal(lines.length, 2);
  limit.close();
  assert.equal(lines.length, 3);
  assert.equal(lines[2]!.droppedSinceLastLine, 5);
  assert.ok(lines.every((line) => line.level === 40), 'warnings');
});

test('memory stays bounded however many devices report', () => {
  const { limit } = limiter({ maxDevices: 100 });
  for (let i = 0; i < 10_000; i++) for (let j = 0; j < REPORT_BURST + 1; j++) limit.admit(`device-${i}`);
  assert.equal(limit.trackedDevices, 100);
  limit.close();
});
