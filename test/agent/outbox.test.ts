import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DirectReports } from '../../agent/direct-reports.ts';
import { Outbox } from '../../agent/outbox.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { createLogger } from '../../shared/util/log.ts';
import { tempDir } from '../helpers/cli.ts';

test('outbox: entries that are not JSON, not entries or not files are removed instead of blocking later reports', async (t) => {
  const dir = join(await tempDir(t, 'fleetprune-outbox-'), 'outbox');
  await mkdir(dir);
  // Sorted before anything enqueued now: the flush meets them first.
  await writeFile(join(dir, '000000000000001-000000-shape.json'), '{}');
  await writeFile(join(dir, '000000000000001-000001-text.json'), 'not json');
  await mkdir(join(dir, '000000000000001-000002-dir.json'));
  await mkdir(join(dir, '.leftover-temp-dir'));
  const outbox = new Outbox(dir, createLogger('outbox-test', 'silent'));
  await outbox.init();
  await outbox.enqueue({ topic: 'fleetprune/v1/devices/d1/reports', payload: '{"id":"r1"}' }, 'r1');

  const published: [string, string][] = [];
  await outbox.flush(async (topic, payload) => void published.push([topic, payload.toString()]));
  assert.deepEqual(published, [['fleetprune/v1/devices/d1/reports', '{"id":"r1"}']]);
  assert.deepEqual(await readdir(dir), []);
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
