import assert from 'node:assert/strict';
import { pino } from 'pino';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DirectReports } from '../../agent/direct-reports.ts';
import { Outbox } from '../../agent/outbox.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { createLogger } from '../../shared/util/log.ts';
import { tempDir } from '../helpers/cli.ts';
import { makeFifo, releaseFifo, settlesWithin } from './fifo.ts';

const D1_REPORTS = 'fleetprune/v1/devices/d1/reports';
const onlyD1Reports = { allowedTopic: (topic: string) => topic === D1_REPORTS };

/** A logger that keeps its lines (parsed), as agent-harness.ts's does, without loading the agent. */
function recordingLogger() {
  const lines: Record<string, any>[] = [];
  return { logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, any>) }), lines };
}

test('outbox: entries that are not JSON, not entries or not files are removed instead of blocking later reports', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-'), 'outbox');
  await mkdir(dir);
  // Sorted before anything enqueued now: the flush meets them first.
  await writeFile(join(dir, '000000000000001-000000-shape.json'), '{"topic":"fleetprune/v1/devices/d1/reports","payload":{}}');
  await writeFile(join(dir, '000000000000001-000001-text.json'), 'not json');
  await mkdir(join(dir, '000000000000001-000002-dir.json'));
  await mkdir(join(dir, '.leftover-temp-dir'));
  const { logger, lines } = recordingLogger();
  const outbox = new Outbox(dir, logger, onlyD1Reports);
  await outbox.init();
  await outbox.enqueue({ topic: D1_REPORTS, payload: '{"id":"r1"}' }, 'r1');

  const published: [string, string][] = [];
  await outbox.flush(async (topic, payload) => void published.push([topic, payload.toString()]));
  assert.deepEqual(published, [[D1_REPORTS, '{"id":"r1"}']]);
  assert.deepEqual(await readdir(dir), []);
  // Why each went, on one line (not zod's multi-line dump of its issues).
  const removed = lines.filter((line) => line.msg === 'unreadable outbox entry removed');
  assert.equal(removed.length, 3);
  assert.equal(removed[0]?.err, 'not an outbox entry (payload: must be a string, not an object)');
});

test('outbox: an entry that is a FIFO is removed as junk at once, not read (the flush blocked on it for good)', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-fifo-'), 'outbox');
  await mkdir(dir);
  const fifo = join(dir, '000000000000001-000000-fifo.json');
  makeFifo(fifo);
  const { logger, lines } = recordingLogger();
  const outbox = new Outbox(dir, logger, onlyD1Reports);
  await outbox.init();
  await outbox.enqueue({ topic: D1_REPORTS, payload: '{"id":"r1"}' }, 'r1');

  const published: string[] = [];
  const outcome = await settlesWithin(outbox.flush(async (_topic, payload) => void published.push(payload.toString())), 3000, () => releaseFifo(fifo));
  assert.notEqual(outcome, 'blocked', 'the flush is still blocked on the FIFO after 3 s');
  assert.deepEqual(published, ['{"id":"r1"}']);
  assert.deepEqual(await readdir(dir), []);
  const removed = lines.find((line) => line.msg === 'unreadable outbox entry removed');
  assert.equal(removed?.level, 50, 'logged at error level');
  assert.equal(removed?.file, fifo);
  assert.match(removed?.err, /not a regular file/);
});

test('outbox: an entry for a topic this device does not publish (a wildcard, another device\'s reports) is removed and logged; the reports behind it are sent', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-topic-'), 'outbox');
  await mkdir(dir);
  // Sorted before anything enqueued now: the flush meets them first.
  await writeFile(join(dir, '000000000000001-000000-wildcard.json'), JSON.stringify({ topic: 'fleetprune/#', payload: '{"id":"x1"}' }));
  await writeFile(join(dir, '000000000000001-000001-other.json'), JSON.stringify({ topic: 'fleetprune/v1/devices/d2/reports', payload: '{"id":"x2"}' }));
  const { logger, lines } = recordingLogger();
  const outbox = new Outbox(dir, logger, onlyD1Reports);
  await outbox.init();
  await outbox.enqueue({ topic: D1_REPORTS, payload: '{"id":"r1"}' }, 'r1');

  // As a broker would: a topic the device may not publish on fails (or drops the connection) every time.
  const published: [string, string][] = [];
  await outbox.flush(async (topic, payload) => {
    if (topic !== D1_REPORTS) throw new Error(`not authorized to publish on ${topic}`);
    published.push([topic, payload.toString()]);
  });
  assert.deepEqual(published, [[D1_REPORTS, '{"id":"r1"}']]);
  assert.deepEqual(await readdir(dir), []);
  const removed = lines.filter((line) => line.msg === 'outbox entry for a topic this device does not publish removed');
  assert.deepEqual(removed.map((line) => [line.level, line.topic]), [[50, 'fleetprune/#'], [50, 'fleetprune/v1/devices/d2/reports']]);
});

test('outbox: an entry whose payload no broker or server accepts (over 64 KiB, or not JSON) is removed and logged; the reports behind it are sent', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-unsendable-'), 'outbox');
  await mkdir(dir);
  const big = JSON.stringify({ id: 'big', pad: 'x'.repeat(100_000) });
  await writeFile(join(dir, '000000000000001-000000-big.json'), JSON.stringify({ topic: D1_REPORTS, payload: big }));
  await writeFile(join(dir, '000000000000001-000001-text.json'), JSON.stringify({ topic: D1_REPORTS, payload: 'not json' }));
  const { logger, lines } = recordingLogger();
  const outbox = new Outbox(dir, logger, onlyD1Reports);
  await outbox.init();
  await outbox.enqueue({ topic: D1_REPORTS, payload: '{"id":"r1"}' }, 'r1');

  // As the broker does: a packet over a device's limit closes the connection, every time.
  const published: string[] = [];
  await outbox.flush(async (_topic, payload) => {
    if (payload.length > 68 * 1024) throw new Error('read ECONNRESET');
    published.push(payload.toString());
  });
  assert.deepEqual(published, ['{"id":"r1"}'], 'only the report is sent, not the junk before it');
  assert.deepEqual(await readdir(dir), []);
  const removed = lines.filter((line) => line.msg === 'outbox entry no broker or server accepts removed');
  assert.deepEqual(removed.map((line) => line.level), [50, 50]);
  assert.match(removed[0]?.reason, /payload of 100\d{3} bytes exceeds 65536/);
  assert.match(removed[1]?.reason, /not JSON/);
});

test('outbox: the pending count drops as junk entries are removed, while the broker is still away (not at the next send)', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-count-'), 'outbox');
  await mkdir(dir);
  await writeFile(join(dir, '000000000000001-000000-text.json'), 'not json');
  await writeFile(join(dir, '000000000000001-000001-wildcard.json'), JSON.stringify({ topic: 'fleetprune/#', payload: '{}' }));
  const counts: number[] = [];
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), { ...onlyD1Reports, onPendingChange: (pending) => counts.push(pending) });
  await outbox.init();
  await outbox.enqueue({ topic: D1_REPORTS, payload: '{"id":"r1"}' }, 'r1');

  await outbox.flush(async () => {
    throw new Error('broker away');
  });
  assert.deepEqual(counts, [2, 3, 2, 1], 'init, enqueue, then one drop per junk entry removed');
  assert.equal((await readdir(dir)).length, 1, 'the report stays for the next flush');
});

const answer = (id: string, assignmentId: string, outcome: AssignmentReport['outcome']): AssignmentReport => ({
  schema: 1,
  id,
  kind: 'assignment',
  deviceId: 'd1',
  createdAt: '2026-01-01T00:00:00.000Z',
  assignmentId,
  outcome,
  role: 'candidate',
  model: 'm',
  version: '1',
  sha256: '0'.repeat(64),
  reason: null,
});

test('direct reports: a refusal stays unrecorded after it is sent, until a state write records it', async () => {
  const direct = new DirectReports();
  const sent: string[] = [];
  const publish = async (report: { id: string }) => void sent.push(report.id);
  const refusal = answer('refusal-1', 'a1', 'refused');
  direct.holdUnrecorded(refusal);
  await direct.send([], publish);
  assert.deepEqual(sent, ['refusal-1']);
  // Sent, but not on disk: a state write must still record it.
  assert.deepEqual(direct.unrecorded(), [refusal]);
  assert.equal(direct.refused('a1'), true);
  direct.hold(refusal);
  assert.equal(direct.holding, false, 'a report sent already is not held again');
  direct.recorded(['refusal-1']);
  assert.deepEqual(direct.unrecorded(), []);
  assert.equal(direct.refused('a1'), false);

});

test('outbox: entries are sent in the order they were enqueued, whatever the wall clock did meanwhile (stepped back by NTP)', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-clock-'), 'outbox');
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await outbox.init();
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  // A clock that ran ahead at boot, then stepped back, then stepped back again.
  for (const [at, id] of [['2030-01-01T00:00:00Z', 'r1'], ['2026-12-01T00:00:00Z', 'r2'], ['2001-01-01T00:00:00Z', 'r3']] as const) {
    Date.now = () => Date.parse(at);
    await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }, id);
  }
  Date.now = realNow;
  // A restart with the entries still there (the broker was down): the new run's entries follow them.
  const again = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await again.init();
  await again.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'r4' }) }, 'r4');

  const published: string[] = [];
  await again.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published, ['r1', 'r2', 'r3', 'r4']);
  assert.deepEqual(await readdir(dir), []);
});

test('outbox: entries an older agent wrote (named by time) are sent first, in their old order, then those written since', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-upgrade-'), 'outbox');
  await mkdir(dir);
  // The old names: `<Date.now(), 15 digits>-<6-digit sequence of that run>-<report id>.json`.
  const old = (name: string, id: string) => writeFile(join(dir, name), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }));
  await old('001764590000123-000001-o2.json', 'o2');
  await old('001764590000123-000000-o1.json', 'o1');
  await old('001764590000999-000002-o3.json', 'o3');
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await outbox.init();
  for (const id of ['n1', 'n2']) await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }, id);

  const published: string[] = [];
  await outbox.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published, ['o1', 'o2', 'o3', 'n1', 'n2']);
});

test('outbox: a stray file named with a very long number does not move the numbering on: later entries are still written and sent', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-long-number-'), 'outbox');
  await mkdir(dir);
  // Junk (not an entry) and an entry of a shape the agent never writes, both with 230-digit numbers.
  await writeFile(join(dir, `${'9'.repeat(230)}-junk.json`), 'not json');
  await writeFile(join(dir, `${'8'.repeat(230)}-stray.json`), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'stray' }) }));
  // An entry of the agent's own shape still sets the numbering.
  await writeFile(join(dir, '000000000000041-r0.json'), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'r0' }) }));
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await outbox.init();
  for (const id of ['r1', 'r2']) await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }, id);
  const names = (await readdir(dir)).filter((name) => name.endsWith('-r1.json') || name.endsWith('-r2.json')).sort();
  assert.deepEqual(names, ['000000000000042-r1.json', '000000000000043-r2.json'], 'numbered on from the agent\'s own entry');

  const published: string[] = [];
  await outbox.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published, ['r0', 'r1', 'r2', 'stray'], 'the stray entry is sent in its turn (last, by its number); the junk is removed');
  await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'r3' }) }, 'r3');
  assert.deepEqual(await readdir(dir), ['000000000000044-r3.json']);
});

test('outbox: a stray entry numbered with 18 digits does not move the numbering past what the next start reads: reports stay in order across restarts', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-18-digits-'), 'outbox');
  await mkdir(dir);
  await writeFile(join(dir, '999999999999999999-stray.json'), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'stray' }) }));
  const first = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await first.init();
  await first.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'zzzz-first' }) }, 'zzzz-first');
  // A restart, the broker away meanwhile: nothing sent.
  const second = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await second.init();
  await second.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'aaaa-second' }) }, 'aaaa-second');

  const published: string[] = [];
  await second.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published.filter((id) => id !== 'stray'), ['zzzz-first', 'aaaa-second'], `the earlier report is sent first: ${JSON.stringify(published)}`);
});

test('outbox: a stray entry with the largest number the agent reads keeps numbering within it, and later entries keep their order', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-largest-'), 'outbox');
  await mkdir(dir);
  await writeFile(join(dir, `${'9'.repeat(17)}-stray.json`), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'stray' }) }));
  for (const id of ['n1', 'n2']) {
    const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
    await outbox.init();
    await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }, id);
  }
  const names = await readdir(dir);
  assert.equal(names.every((name) => /^\d{1,17}-/.test(name)), true, `no entry numbered beyond 17 digits: ${JSON.stringify(names)}`);
  const published: string[] = [];
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await outbox.init();
  await outbox.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published.filter((id) => id !== 'stray'), ['n1', 'n2'], 'in the order written');
});

test('outbox: a stray entry numbered at the largest number the agent reads is not numbered from: later entries are sent in the order written, not by report id', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-cap-'), 'outbox');
  await mkdir(dir);
  await writeFile(join(dir, `${'9'.repeat(17)}-stray.json`), JSON.stringify({ topic: D1_REPORTS, payload: JSON.stringify({ id: 'stray' }) }));
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'), onlyD1Reports);
  await outbox.init();
  for (const id of ['zzzz-activated', 'aaaa-rolled-back']) await outbox.enqueue({ topic: D1_REPORTS, payload: JSON.stringify({ id }) }, id);
  const published: string[] = [];
  await outbox.flush(async (_topic, payload) => void published.push(JSON.parse(payload.toString()).id));
  assert.deepEqual(published, ['zzzz-activated', 'aaaa-rolled-back', 'stray'], `sent in the order written, the stray in its turn: ${JSON.stringify(published)}`);
});
