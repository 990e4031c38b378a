import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureWritableDirectory } from '../../shared/util/fs-checks.ts';
import { UserError } from '../../shared/util/errors.ts';
import { mountTmpfs, remount } from '../helpers/tmpfs.ts';

test('a directory on a read-only file system is refused as such, not as "permission denied" (which sends the user to chmod)', async (t) => {
  const mount = await mountTmpfs(t, 'read-only', '1m');
  if (!mount) return t.skip('cannot mount a tmpfs here (needs root)');
  await mkdir(join(mount, 'data'));
  assert.ok(await remount(mount, 'ro'), 'remounted read-only');
  await assert.rejects(ensureWritableDirectory(join(mount, 'data'), '--data-dir'), (error: unknown) => error instanceof UserError && error.message === `--data-dir: cannot write in ${join(mount, 'data')} (read-only file system)`);
  await assert.rejects(ensureWritableDirectory(join(mount, 'new'), '--data-dir'), (error: unknown) => error instanceof UserError && error.message === `--data-dir: cannot create ${join(mount, 'new')} (${mount} is not a writable directory: read-only file system)`);
});
