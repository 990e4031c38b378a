import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { Broker } from '../../server/broker/broker.ts';
import { FleetReceiver } from '../../server/fleet/fleet-receiver.ts';
import type { StateOutcome } from '../../server/fleet/fleet-ingest.ts';
import { InMemoryFleetIngest } from '../../server/fleet/in-memory-fleet-ingest.ts';
import type { Status } from '../../shared/protocol/payloads.ts';
import { statusTopic } from '../../shared/protocol/topics.ts';

/** The in-memory ingest, whose store fails a given number of times first (a busy or restarting database). */
class FailingIngest extends InMemoryFleetIngest {
  constructor(
    public failuresLeft: number,
    /** Fail as a bug of the server's would (a TypeError), not as the store does. */
    public bug = false,
    public message = 'Cannot read properties of undefined',
  ) {
    super();
  }
  override async recordStatus(status: Status): Promise<StateOutcome> {
    if (this.failuresLeft-- > 0) throw Object.assign(new Error(this.bug ? this.message : 'database is locked'), this.bug ? {} : { code: 'SQLITE_BUSY' });
    return super.recordStatus(status);
  }
}

function receiver(ingest: InMemoryFleetIngest, logger = pino({ level: 'silent' })) {
  const registry = new Registry();
  const dropped = new Counter({ name: 'dropped_total', help: 'x', labelNames: ['kind', 'reason'], registers: [registry] });
  const accepted = new Counter({ name: 'accepted_total', help: 'x', labelNames: ['kind'], registers: [registry] });
  const fleetReceiver = new FleetReceiver({ broker: {} as Broker, ingest, logger, dropped, accepted, storeRetryDelaysMs: [10, 10, 10] });
  const count = async (name: string) => (await registry.getSingleMetric(name)!.get()).values.reduce((sum, value) => sum + value.value, 0);
  return { fleetReceiver, count };
}

const status = Buffer.from(JSON.stringify({ schema: 1, deviceId: 'osaka-1', online: true, since: '2026-03-01T09:00:00.000Z' }));

test('a device message whose storing fails is tried again, and stored once the store answers', async () => {
  const ingest = new FailingIngest(2);
  const { fleetReceiver, count } = receiver(ingest);
  await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.equal(ingest.statuses.get('osaka-1')?.online, true);
  assert.deepEqual([await count('accepted_total'), await count('dropped_total')], [1, 0]);
});

test('a store that keeps failing: the message is dropped as storage-error after the last attempt, on one warning line without a stack, and during an outage one line a minute for all devices', async () => {
  const ingest = new FailingIngest(100);
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const { fleetReceiver, count } = receiver(ingest, logger);
  // Resolves: the broker has nothing to do with a store's failure (it would log the error again).
  await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.equal(ingest.failuresLeft, 100 - 4, 'one attempt and three retries');
  assert.equal(ingest.statuses.size, 0);
  assert.deepEqual([await count('accepted_total'), await count('dropped_total')], [0, 1]);
  const warnings = () => lines.filter((line) => (line.level as number) >= 40);
  assert.equal(warnings().length, 1, JSON.stringify(lines));
  const [line] = warnings();
  assert.equal(line!.msg, 'dropped a device message the server could not store');
  assert.equal(line!.err, 'database is locked');
  assert.equal(line!.deviceId, 'osaka-1');
  assert.equal(line!.reason, 'storage-error');
  assert.doesNotMatch(JSON.stringify(lines), /"stack"|\bat [\w.<>]+ \(/, 'no stack in any line');
  // Another device's drop within the minute is counted, not logged on a line of its own.
  await fleetReceiver.handle(statusTopic('kyoto-2'), Buffer.from(JSON.stringify({ schema: 1, deviceId: 'kyoto-2', online: true, since: '2026-03-01T09:00:00.000Z' })));
  assert.equal(warnings().length, 1);
  assert.equal(await count('dropped_total'), 2);
  // Once the store takes messages again, how many were dropped in all is said.
  ingest.failuresLeft = 0;
  await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.deepEqual(lines.filter((line) => line.dropped !== undefined).map((line) => [line.msg, line.dropped]), [['the store takes device messages again; 2 were dropped while it did not', 2]]);
});

test('an ingest that fails by a bug of the server\'s (not the store\'s) is logged at error level with its stack, not as a storage outage', async () => {
  const ingest = new FailingIngest(100, true);
  const lines: Record<string, unknown>[] = [];
  const { fleetReceiver, count } = receiver(ingest, pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) }));
  await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.equal(await count('dropped_total'), 1);
  assert.equal(ingest.failuresLeft, 99, 'not retried: waiting does not heal a bug');
  const errors = () => lines.filter((line) => (line.level as number) >= 50);
  assert.equal(errors().length, 1, JSON.stringify(lines));
  assert.equal(errors()[0]!.msg, 'cannot ingest a device message');
  assert.match(JSON.stringify(errors()[0]!.err), /"stack":"Error: Cannot read properties of undefined\\n\s+at /);
  // A bug every message meets: one line a minute, not a stack per message.
  for (let i = 0; i < 5; i++) await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.equal(errors().length, 1);
  assert.equal(await count('dropped_total'), 6);
  // Another bug in the same minute gets a line of its own.
  ingest.message = 'x is not a function';
  await fleetReceiver.handle(statusTopic('osaka-1'), status);
  assert.deepEqual(errors().map((line) => (line.err as { message: string }).message), ['Cannot read properties of undefined', 'x is not a function']);
});

test('the store\'s failures are told from bugs: unreachable, busy, read-only (a replica after a failover), damaged, a table gone', async () => {
  const { isStoreFailure } = await import('../../server/fleet/fleet-receiver.ts');
  const coded = (code: string) => Object.assign(new Error(code), { code });
  for (const code of ['SQLITE_BUSY', 'SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_FULL', '25006', '57P01', '53100', '40P01', '42P01', 'ECONNREFUSED']) assert.equal(isStoreFailure(coded(code)), true, code);
  assert.equal(isStoreFailure(Object.assign(new Error('no such table: devices'), { code: 'SQLITE_ERROR' })), true, 'a table gone on SQLite too');
  assert.equal(isStoreFailure(Object.assign(new Error('near "x": syntax error'), { code: 'SQLITE_ERROR' })), false);
  for (const error of [new TypeError('Cannot read properties of undefined'), coded('23505'), coded('22P02'), coded('SQLITE_CONSTRAINT_UNIQUE')]) assert.equal(isStoreFailure(error), false, String((error as { code?: string }).code ?? error.message));
});
