import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ServiceError } from '../../server/app/service-error.ts';
import { BlobStore } from '../../server/artifacts/blob-store.ts';

async function openStore(t: TestContext): Promise<BlobStore> {
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-blob-audit-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const store = new BlobStore(root);
  await store.open();
  return store;
}

const BYTES = Buffer.from('a model file whose sender paused half way');
const SHA256 = createHash('sha256').update(BYTES).digest('hex');

/** The bytes in two chunks; `between` runs while the upload is half written (its sender pausing). */
async function* pausedUpload(between: () => Promise<unknown>): AsyncIterable<Uint8Array> {
  yield BYTES.subarray(0, 10);
  await between();
  yield BYTES.subarray(10);
}

test('blob GC while an upload is paused half way leaves the upload alone: it is stored (it failed as an internal ENOENT)', async (t) => {
  const store = await openStore(t);
  // A collection whose cutoff is past the upload's last write (a sender idle longer than --min-age).
  let removed: { count: number } | undefined;
  const stored = await store.put(pausedUpload(async () => (removed = await store.removeStaleUploads(Date.now() + 3_600_000))), SHA256, 1 << 20);
  assert.equal(removed?.count, 0, 'the upload in progress is not a stale partial upload');
  assert.deepEqual({ sha256: stored.sha256, bytes: stored.bytes, created: stored.created }, { sha256: SHA256, bytes: BYTES.length, created: true });
  assert.deepEqual(await store.list(), [SHA256]);
});

test('a paused upload removed by another server\'s blob GC (a shared blob directory) is a clear conflict, not an internal ENOENT; nothing is stored', async (t) => {
  const store = await openStore(t);
  const other = new BlobStore(store.root);
  await assert.rejects(
    store.put(pausedUpload(() => other.removeStaleUploads(Date.now() + 3_600_000)), SHA256, 1 << 20),
    (error: unknown) => error instanceof ServiceError && error.code === 'conflict' && /upload the file again/.test(error.message),
  );
  assert.deepEqual(await store.list(), []);
});
