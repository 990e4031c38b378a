import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { Counter, Registry } from 'prom-client';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StateThrottle } from '../../server/fleet/state-throttle.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { Telemetry } from '../../shared/protocol/payloads.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';

/**
 * The throttle's "each message counts once" when a held heartbeat's write fails on a real
 * PostgreSQL (a statement cancelled while it waited for a row lock) and a newer heartbeat came in
 * during that write: the newer one is stored, and the failed one counts as superseded
 * (dropped, rate-limited), not nowhere.
 */
test('a held heartbeat whose write fails while a newer one arrives counts as dropped (rate-limited): every heartbeat counts once', async (t) => {
  const location = await freshStoreLocation(t, 'postgres');
  if (!location || location.engine !== 'postgres') return;
  const store = await openStore(location);
  deferCleanup(t, () => store.close());
  const fleet = new FleetStore(store);
  const enrolledAt = new Date().toISOString();
  await fleet.repos.devices.insert({ id: 'd1', labels: {}, secretHash: 'h', tokenId: 't', enrolledAt, enrolledBy: 'test' });

  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'dropped', labelNames: ['kind', 'reason'] as const, registers: [registry] });
  const accepted = new Counter({ name: 'accepted_total', help: 'accepted', labelNames: ['kind'] as const, registers: [registry] });
  const throttle = new StateThrottle({ inner: new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes() }), dropped, accepted, logger: testLogger, minIntervalMs: 1000 });
  deferCleanup(t, () => throttle.flush());
  const started = Date.now();
  const heartbeat = (n: number): Telemetry => ({ schema: 1, deviceId: 'd1', sentAt: new Date(started + n * 1000).toISOString(), uptimeSeconds: n, cpuPercent: 0, rssBytes: 0, active: null, candidate: null, previous: null });

  // Another session holds the device's row, so the throttle's next write of it waits.
  const locker = new pg.Client({ connectionString: location.databaseUrl, options: `-c search_path=${location.schema}` });
  await locker.connect();
  deferCleanup(t, () => locker.end());
  const { rows } = await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const lockerPid = rows[0]!.pid;

  let receiverAccepted = 0; // the receiver counts the messages written at once
  assert.equal(await throttle.recordTelemetry(heartbeat(1)), 'recorded', 'the first heartbeat is written at once');
  receiverAccepted++;
  // Held before the row is locked: had the interval ended first (a slow machine), a heartbeat
  // recorded with the row locked would be written at once, and waiting for its answer would wait
  // for the lock this test holds, for ever.
  assert.equal(await throttle.recordTelemetry(heartbeat(2)), 'held');
  await locker.query('BEGIN');
  await locker.query("SELECT id FROM devices WHERE id = 'd1' FOR UPDATE");
  // The interval ends: heartbeat 2's write starts and waits for the row.
  let blocked: number | undefined;
  await waitFor(async () => {
    const waiting = await locker.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [lockerPid]);
    blocked = waiting.rows[0]?.pid;
    return blocked !== undefined;
  }, 10_000, 'heartbeat 2\'s write waiting for the row (the interval must end after the row was locked)');
  assert.equal(await throttle.recordTelemetry(heartbeat(3)), 'held', 'heartbeat 3 comes in during that write');
  await locker.query('SELECT pg_cancel_backend($1)', [blocked]); // heartbeat 2's write fails
  await locker.query('ROLLBACK');

  await waitFor(async () => (await fleet.repos.devices.get('d1'))?.heartbeat?.uptimeSeconds === 3, 10_000, 'heartbeat 3 stored');
  await throttle.flush();
  const total = async (counter: Counter<string>) => (await counter.get()).values.reduce((sum, value) => sum + value.value, 0);
  const rateLimited = (await dropped.get()).values.filter((value) => value.labels.reason === 'rate-limited').reduce((sum, value) => sum + value.value, 0);
  assert.equal(await total(accepted), 1, 'heartbeat 3 accepted when stored');
  assert.equal(rateLimited, 1, 'heartbeat 2, superseded by 3 while its write failed, counts as dropped (rate-limited)');
  assert.equal(receiverAccepted + (await total(accepted)) + (await total(dropped)), 3, 'three heartbeats, each counted once');
});
