import assert from 'node:assert/strict';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';
import { spawnServer } from '../server/helpers/server-process.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';

test('devices enroll: when the config cannot be written after enrolling, the advice works (a new id; the old one is never reused)', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, join(dir, 'server'));
  const connection = ['--server', `127.0.0.1:${server.grpcPort}`, '--token', ADMIN_TOKEN];
  // A dangling symlink passes the up-front check (nothing there to overwrite) but the exclusive create fails.
  const out = join(dir, 'agent.json');
  await symlink(join(dir, 'nowhere', 'agent.json'), out);
  const failed = await runCli(['devices', 'enroll', '--id', 'press-1', '--out', out, ...connection]);
  assert.equal(failed.code, 1, failed.stderr);
  assert.ok(isOneLineError(failed.stderr), failed.stderr);
  assert.match(failed.stderr, /the device is enrolled but .* could not be written .*revoke press-1 and enroll the device under a new id/);
  // Following it: the same id again is refused, a new one works.
  const same = await runCli(['devices', 'enroll', '--id', 'press-1', '--out', join(dir, 'again.json'), ...connection]);
  assert.match(same.stderr, /already enrolled/);
  assert.equal((await runCli(['devices', 'revoke', 'press-1', ...connection])).code, 0);
  const fresh = await runCli(['devices', 'enroll', '--id', 'press-1b', '--out', join(dir, 'fresh.json'), ...connection]);
  assert.equal(fresh.code, 0, fresh.stderr);
});
