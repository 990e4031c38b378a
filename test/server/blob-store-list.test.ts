import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { BlobStore } from '../../server/artifacts/blob-store.ts';
import { collectBlobGarbage } from '../../server/artifacts/blob-garbage-collector.ts';
import type { Store } from '../../server/store/store.ts';
import { tempDir } from '../helpers/cli.ts';

/** Stores `count` random blobs directly (as the store lays them out), last used two hours ago; returns their sha256. */
async function oldBlobs(root: string, count: number): Promise<string[]> {
  const then = new Date(Date.now() - 2 * 3600_000);
  const stored: string[] = [];
  for (let i = 0; i < count; i++) {
    const data = randomBytes(16);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const path = join(root, sha256.slice(0, 2), sha256);
    await mkdir(join(root, sha256.slice(0, 2)), { recursive: true });
    await writeFile(path, data);
    await utimes(path, then, then);
    stored.push(sha256);
  }
  return stored.sort();
}

/** A store whose versions reference nothing, with an audit log that takes anything. */
const emptyRegistry = { models: { referencedBlobs: async () => new Set<string>() }, audit: { append: async () => {} } } as unknown as Store;

test('listing skips a prefix directory that is gone by the time it is read (another collection removed it): no ENOENT', async (t) => {
  const root = await tempDir(t, 'fleetprune-blobs-');
  const blobs = new BlobStore(root);
  await blobs.open();
  const stored = await oldBlobs(root, 3);
  // Listed in the store's directory, gone when opened: what a concurrent collection's rmdir of an
  // emptied prefix leaves between the two reads (a dangling link shows it every time).
  const gone = stored.some((sha256) => sha256.startsWith('ff')) ? 'fe' : 'ff';
  await symlink(join(root, 'removed-meanwhile'), join(root, gone));
  assert.deepEqual(await blobs.list(), stored);
  const result = await collectBlobGarbage({ store: emptyRegistry, blobs }, { dryRun: false, minAgeSeconds: 3600, actor: 'test' });
  assert.equal(result.removed.length, 3);
});
