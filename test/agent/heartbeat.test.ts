import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeartbeatBuilder } from '../../agent/heartbeat.ts';

const slots = { active: null, candidate: null, previous: null };
const serving = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };

test('a wall clock stepped backwards (an NTP correction) leaves uptime and CPU measured on the monotonic clock', () => {
  let wall = Date.parse('2026-03-01T09:00:00Z');
  let monotonic = 1000;
  const heartbeat = new HeartbeatBuilder('dev-a', () => new Date(wall), { monotonic: () => monotonic });
  wall -= 3_600_000; // the clock jumps an hour back
  monotonic += 30_000;
  const beat = heartbeat.build(slots, serving);
  assert.equal(beat.uptimeSeconds, 30);
  assert.equal(beat.sentAt, '2026-03-01T08:00:00.000Z', 'sentAt is still the wall clock');
  assert.ok(beat.cpuPercent >= 0 && Number.isFinite(beat.cpuPercent));
  wall += 7_200_000; // and forward again
  monotonic += 30_000;
  assert.equal(heartbeat.build(slots, serving).uptimeSeconds, 60);
});
