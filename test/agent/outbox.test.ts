import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Outbox } from '../../agent/outbox.ts';
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
