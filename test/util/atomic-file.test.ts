import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeFileAtomic } from '../../shared/util/atomic-file.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';

// A full disk's write named no file ("ENOSPC: no space left on device, write"): node names none for
// a write on an open file, and the agent's log of a state write that failed said only that.
test('a write that fails on a full disk names the file it was writing (not its temp file), and leaves the old file and no temp file', async (t) => {
  const mount = await mountTmpfs(t, 'atomic-full', '64k');
  if (!mount) return t.skip('cannot mount a tmpfs here (needs root)');
  const path = join(mount, 'state.json');
  await writeFile(path, 'old');
  await assert.rejects(writeFileAtomic(path, Buffer.alloc(256 * 1024, 1)), (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, 'ENOSPC');
    assert.equal(error.message, `ENOSPC: no space left on device, write '${path}'`, 'the file it was written for, not the temp file (removed)');
    assert.equal(error.path, path);
    return true;
  });
  assert.equal(await readFile(path, 'utf8'), 'old');
  assert.deepEqual(await readdir(mount), ['state.json']);
});
