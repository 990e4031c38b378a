import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rmdir, unlink, utimes } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { ServiceError } from '../../server/app/service-error.ts';
import { collectBlobGarbage, type BlobGcResult } from '../../server/artifacts/blob-garbage-collector.ts';
import { BlobStore } from '../../server/artifacts/blob-store.ts';
import type { Store } from '../../server/store/store.ts';
import { tempDir } from '../helpers/cli.ts';
import { makeArtifact, makeSigner, storeSnapshot, uploadBlobs } from './helpers/artifacts.ts';
import { describeCall, hookFs, hookUnownedCalls, runAs, type FsCall } from './helpers/fs-interleaving.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/*
 * Servers on PostgreSQL share one data directory, so one server's blob garbage collection runs
 * against another's uploads and registrations with no lock in common: only the file system orders
 * them. Each test runs one operation whole just before the k-th file system call of the other, for
 * every k (and once after it), on two blob stores over one directory, and checks the outcome.
 */

const HOUR_MS = 3_600_000;

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

async function settle<T>(work: () => Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error };
  }
}

function value<T>(outcome: Settled<T>, what: string): T {
  if (!outcome.ok) assert.fail(`${what} failed: ${(outcome.error as Error)?.stack ?? String(outcome.error)}`);
  return outcome.value;
}

interface Shared {
  root: string;
  /** The server collecting garbage. */
  a: BlobStore;
  /** Another server sharing its data directory. */
  b: BlobStore;
}

async function shared(t: TestContext): Promise<Shared> {
  const root = await tempDir(t, 'fleetprune-shared-blobs-');
  const a = new BlobStore(root);
  const b = new BlobStore(root);
  await a.open();
  await b.open();
  return { root, a, b };
}

function sha256Of(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function* once(data: Buffer): AsyncIterable<Uint8Array> {
  yield data;
}

/** Stores `data` and makes it look last used two hours ago (past the one-hour grace period). */
async function storeOld(blobs: BlobStore, data: Buffer): Promise<string> {
  const { sha256 } = await blobs.put(once(data), sha256Of(data), data.length);
  const then = new Date(Date.now() - 2 * HOUR_MS);
  await utimes(blobs.pathOf(sha256), then, then);
  return sha256;
}

/** A registry whose versions reference `referenced()` (read at each call), with an audit log that takes anything. */
function registry(referenced: () => string[] = () => []): Store {
  return { models: { referencedBlobs: async () => new Set(referenced()) }, audit: { append: async () => {} } } as unknown as Store;
}

function gc(blobs: BlobStore, store = registry()): Promise<BlobGcResult> {
  return collectBlobGarbage({ store, blobs }, { dryRun: false, minAgeSeconds: 3600, actor: 'test' });
}

/** Every file under the store's directory (relative paths), partial uploads included. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name)))
    .sort();
}

/** The store holds exactly `blobs`, each at its address with the bytes it names, and no other file anywhere. */
async function assertHoldsExactly(env: Shared, blobs: Record<string, Buffer>, where: string): Promise<void> {
  const expected = Object.keys(blobs)
    .map((sha256) => relative(env.root, env.a.pathOf(sha256)))
    .sort();
  assert.deepEqual(await filesUnder(env.root), expected, `${where}: the files in the store`);
  for (const [sha256, data] of Object.entries(blobs)) assert.deepEqual(await readFile(env.a.pathOf(sha256)), data, `${where}: the bytes of ${sha256}`);
}

/**
 * Runs `outer` as an actor, with `inner` run whole just before its k-th file system call, for
 * every k and once after it ends, each on a fresh `setup`; `check` judges each outcome.
 * Returns how many interleavings ran.
 */
async function everyInterleaving<S, O, I>(
  t: TestContext,
  setup: () => Promise<S>,
  outer: (s: S) => Promise<O>,
  inner: (s: S) => Promise<I>,
  check: (s: S, outcome: { outer: Settled<O>; inner: Settled<I>; where: string }) => Promise<void>,
): Promise<number> {
  hookFs(t);
  const dry = await setup();
  const { calls } = await runAs('outer', () => outer(dry));
  for (let k = 0; k <= calls.length; k++) {
    const s = await setup();
    let innerOutcome: Settled<I> | undefined;
    let at = 'after the end';
    const outerOutcome = await settle(async () =>
      (
        await runAs('outer', () => outer(s), {
          before: async (index: number, call: FsCall) => {
            if (index !== k) return;
            at = `before call ${k} ${describeCall(call)}`;
            innerOutcome = await settle(async () => (await runAs('inner', () => inner(s))).result);
          },
        })
      ).result,
    );
    innerOutcome ??= await settle(async () => (await runAs('inner', () => inner(s))).result);
    await check(s, { outer: outerOutcome, inner: innerOutcome, where: `inner ${at}` });
  }
  return calls.length + 1;
}

const removedBy = (result: BlobGcResult) => result.removed.map((blob) => blob.sha256);

/** Every file a collection scanned is counted once: referenced, young (kept) or removed. */
function assertAddsUp(result: BlobGcResult, where: string): void {
  assert.equal(result.referenced + result.young + result.removed.length, result.scanned, `${where}: ${JSON.stringify(result)}`);
}

describe('blob garbage collection against another server sharing the blob directory', () => {
  const data = randomBytes(300);

  /** A registration's claim and a collection, each inside the other at every step. */
  async function checkClaim(env: Shared & { sha256: string }, collection: Settled<BlobGcResult>, claimed: Settled<unknown>, where: string) {
    const result = value(collection, `${where}: the collection`);
    assertAddsUp(result, where);
    const claim = value(claimed, `${where}: the claim (a registration's pusher got a 500)`);
    if (claim) {
      // The registration commits: its blob must still be there, for every device that downloads it.
      assert.equal(removedBy(result).includes(env.sha256), false, `${where}: the claim succeeded, yet the collection removed the blob`);
      await assertHoldsExactly(env, { [env.sha256]: data }, where);
    } else {
      // The registration is refused as for a file never uploaded: the blob is gone.
      assert.deepEqual(removedBy(result), [env.sha256], `${where}: the claim found no blob, yet the collection did not remove it`);
      await assertHoldsExactly(env, {}, where);
    }
  }

  test('a claim inside a collection, at each of its steps: either the claim wins and the blob stays, or the collection wins and the claim finds nothing', async (t) => {
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data) };
    };
    const runs = await everyInterleaving(t, setup, (env) => gc(env.a), (env) => env.b.claim(env.sha256), async (env, outcome) => checkClaim(env, outcome.outer, outcome.inner, outcome.where));
    assert.ok(runs >= 4, `only ${runs} interleavings: the collection made almost no file system calls`);
  });

  test('a collection inside a claim, at each of its steps: no raw ENOENT, and never a claim of a removed blob', async (t) => {
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data) };
    };
    await everyInterleaving(t, setup, (env) => env.b.claim(env.sha256), (env) => gc(env.a), async (env, outcome) => checkClaim(env, outcome.inner, outcome.outer, outcome.where));
  });

  test('uploading the same file again during a collection, either way round: the upload succeeds and the file is stored', async (t) => {
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data) };
    };
    const check = async (env: Shared & { sha256: string }, upload: Settled<unknown>, collection: Settled<BlobGcResult>, where: string) => {
      value(collection, `${where}: the collection`);
      value(upload, `${where}: the upload`);
      await assertHoldsExactly(env, { [env.sha256]: data }, where);
    };
    const put = (env: Shared & { sha256: string }) => env.b.put(once(data), env.sha256, data.length);
    await everyInterleaving(t, setup, (env) => gc(env.a), put, async (env, outcome) => check(env, outcome.inner, outcome.outer, outcome.where));
    await everyInterleaving(t, setup, put, (env) => gc(env.a), async (env, outcome) => check(env, outcome.outer, outcome.inner, outcome.where));
  });

  test('an upload into the prefix directory of the last file a collection removes is stored (it was a 409 "idle so long that GC removed it")', async (t) => {
    // Two files under one prefix directory: the old one is collected, the new one uploaded meanwhile.
    let fresh = randomBytes(300);
    while (sha256Of(fresh).slice(0, 2) !== sha256Of(data).slice(0, 2)) fresh = randomBytes(300);
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data), fresh: sha256Of(fresh) };
    };
    const check = async (env: Shared & { fresh: string }, upload: Settled<unknown>, collection: Settled<BlobGcResult>, where: string) => {
      value(collection, `${where}: the collection`);
      const stored = value(upload, `${where}: the upload`);
      assert.deepEqual(stored, { sha256: env.fresh, bytes: fresh.length, created: true }, where);
      await assertHoldsExactly(env, { [env.fresh]: fresh }, where);
    };
    const put = (env: Shared & { fresh: string }) => env.b.put(once(fresh), env.fresh, fresh.length);
    await everyInterleaving(t, setup, put, (env) => gc(env.a), async (env, outcome) => check(env, outcome.outer, outcome.inner, outcome.where));
    await everyInterleaving(t, setup, (env) => gc(env.a), put, async (env, outcome) => check(env, outcome.inner, outcome.outer, outcome.where));
  });

  test('an upload whose prefix directory a collection of an older version removes just before the upload moves into it is stored', async (t) => {
    // Older versions removed a prefix directory once its last file went (rmdir), and may share the directory during an upgrade.
    hookFs(t);
    const env = await shared(t);
    const sha256 = sha256Of(data);
    const prefix = join(env.root, sha256.slice(0, 2));
    let removed = 0;
    const { result } = await runAs('upload', () => env.b.put(once(data), sha256, data.length), {
      before: async (_index, call) => {
        if (call.fn === 'rename' && call.args[1] === env.b.pathOf(sha256) && removed++ === 0) await rmdir(prefix);
      },
    });
    assert.equal(removed > 0, true, 'the prefix directory was never removed');
    assert.deepEqual(result, { sha256, bytes: data.length, created: true });
    await assertHoldsExactly(env, { [sha256]: data }, 'after the upload');
  });

  test('two collections at once (the daily timer reaching another server): each file removed once, no error, nothing left behind', async (t) => {
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data) };
    };
    await everyInterleaving(t, setup, (env) => gc(env.a), (env) => gc(env.b), async (env, outcome) => {
      const results = [value(outcome.outer, `${outcome.where}: the outer collection`), value(outcome.inner, `${outcome.where}: the inner collection`)];
      for (const result of results) assertAddsUp(result, outcome.where);
      const removed = results.flatMap(removedBy);
      assert.deepEqual(removed, [env.sha256], `${outcome.where}: removed in all`);
      await assertHoldsExactly(env, {}, outcome.where);
    });
  });

  /**
   * Runs a collection by `blobs` that dies (stops for good, as a killed process) just before its k-th
   * file system call, running `before(j)` before each call j up to k; resolves once it died, or
   * false when it ended first.
   */
  async function collectionDyingAt(blobs: BlobStore, k: number, before: (index: number) => Promise<void> = async () => {}): Promise<boolean> {
    let died!: () => void;
    const dead = new Promise<boolean>((resolve) => (died = () => resolve(true)));
    const run = runAs('gc', () => gc(blobs), {
      before: async (index) => {
        if (index > k) return;
        await before(index);
        if (index < k) return;
        died();
        await new Promise(() => {}); // never resumes
      },
    });
    return Promise.race([dead, run.then(() => false)]);
  }

  test('a collection that dies at any step: a file a registration claimed at any step before downloads at once and is kept; the next collection removes the others', async (t) => {
    hookFs(t);
    const setup = async () => {
      const env = await shared(t);
      return { ...env, sha256: await storeOld(env.a, data) };
    };
    const dry = await setup();
    const { calls } = await runAs('gc', () => gc(dry.a));
    for (let k = 0; k < calls.length; k++) {
      // The claim before call claimAt (≤ k), or none.
      for (let claimAt = -1; claimAt <= k; claimAt++) {
        const env = await setup();
        const where = `died before call ${k} ${describeCall(calls[k]!)}${claimAt >= 0 ? `, claimed before call ${claimAt}` : ''}`;
        let claimed: unknown = null;
        // (A claim before the collection came to the file leaves it fewer calls to make: it may end first.)
        await collectionDyingAt(env.a, k, async (index) => {
          if (index === claimAt) claimed = await env.b.claim(env.sha256);
        });
        // A registration that claimed the file commits: the version references it from now on, and
        // devices download it at once, long before the next collection.
        if (claimed) {
          const download = await env.a.openForRead(env.sha256);
          assert.ok(download, `${where}: the claimed file does not download`);
          const chunks: Buffer[] = [];
          for await (const chunk of download.stream()) chunks.push(chunk as Buffer);
          assert.deepEqual(Buffer.concat(chunks), data, where);
        }
        value(await settle(() => gc(env.b, registry(() => (claimed ? [env.sha256] : [])))), `${where}: the next collection`);
        await assertHoldsExactly(env, claimed ? { [env.sha256]: data } : {}, where);
      }
    }
  });

  test('a claim finds a file that a dead collection left moved aside, and keeps it', async (t) => {
    hookFs(t);
    for (let k = 0; ; k++) {
      const env = await shared(t);
      const sha256 = await storeOld(env.a, data);
      if (!(await collectionDyingAt(env.a, k))) break; // k is past its last call
      const where = `died before call ${k}`;
      const claimed = await env.b.claim(sha256);
      if (claimed) {
        assert.deepEqual(claimed, { sha256, bytes: data.length }, where);
        await assertHoldsExactly(env, { [sha256]: data }, where);
        // Claimed just now: a collection keeps it for its grace period.
        value(await settle(() => gc(env.b)), `${where}: the next collection`);
        await assertHoldsExactly(env, { [sha256]: data }, `${where}, after the next collection`);
      } else {
        await assertHoldsExactly(env, {}, where);
      }
    }
  });

  test('two take-backs of a file moved aside (downloads, claims, in one server or two), one inside the other at each step: both find it (one lost the rename: it was a 404 or a "not uploaded")', async (t) => {
    const setup = async () => {
      const env = await shared(t);
      const sha256 = await storeOld(env.a, data);
      assert.ok(await env.a.setAside(sha256, Date.now() - HOUR_MS), 'moved aside, as by a collection that died');
      return { ...env, sha256 };
    };
    const read = async (blobs: BlobStore, sha256: string) => {
      const opened = await blobs.openForRead(sha256);
      await opened?.close();
      return opened ? opened.bytes : null;
    };
    const pairs: [string, (env: Shared & { sha256: string }) => Promise<number | null>, (env: Shared & { sha256: string }) => Promise<number | null>][] = [
      ['two downloads in one server', (env) => read(env.a, env.sha256), (env) => read(env.a, env.sha256)],
      ['a download and a claim in another server', (env) => read(env.a, env.sha256), async (env) => (await env.b.claim(env.sha256))?.bytes ?? null],
      ['two claims in two servers', async (env) => (await env.a.claim(env.sha256))?.bytes ?? null, async (env) => (await env.b.claim(env.sha256))?.bytes ?? null],
    ];
    for (const [what, outer, inner] of pairs) {
      await everyInterleaving(t, setup, outer, inner, async (env, outcome) => {
        const where = `${what}: ${outcome.where}`;
        assert.equal(value(outcome.outer, `${where}: the outer`), data.length, `${where}: the outer take-back found nothing`);
        assert.equal(value(outcome.inner, `${where}: the inner`), data.length, `${where}: the inner take-back found nothing`);
        await assertHoldsExactly(env, { [env.sha256]: data }, where);
      });
    }
  });

  test('a dry run leaves a file moved aside by a dead collection where it is, and lists what the next run removes', async (t) => {
    hookFs(t);
    const dry = await shared(t);
    await storeOld(dry.a, data);
    const { calls } = await runAs('gc', () => gc(dry.a));
    for (let k = 0; k < calls.length; k++) {
      const env = await shared(t);
      await storeOld(env.a, data);
      const where = `died before call ${k} ${describeCall(calls[k]!)}`;
      assert.equal(await collectionDyingAt(env.a, k), true, `${where}: the collection did not die`);
      const before = await filesUnder(env.root);
      const preview = await collectBlobGarbage({ store: registry(), blobs: env.b }, { dryRun: true, minAgeSeconds: 3600, actor: 'test' });
      assert.deepEqual(await filesUnder(env.root), before, `${where}: the dry run changed the store`);
      const run = await gc(env.b);
      assert.deepEqual(run.removed, preview.removed, `${where}: the dry run listed something else than the run removed`);
      assert.deepEqual(run, { ...preview, dryRun: false }, `${where}: the dry run's counts`);
      assertAddsUp(run, where);
      await assertHoldsExactly(env, {}, `${where}: after the next collection`);
    }
  });

  test('a paused upload whose partial file another server collected is still a clear conflict', async (t) => {
    // Unchanged by the above: the upload's own file is gone, not the directory it moves into.
    const env = await shared(t);
    const upload = env.a.put(
      (async function* () {
        yield data.subarray(0, 10);
        await env.b.removeStaleUploads(Date.now() + HOUR_MS);
        yield data.subarray(10);
      })(),
      sha256Of(data),
      data.length,
    );
    await assert.rejects(upload, (error: unknown) => error instanceof ServiceError && error.code === 'conflict');
    await assertHoldsExactly(env, {}, 'after the refused upload');
  });
});

describe('a server while another server sharing its data directory collects garbage', () => {
  async function setup(t: TestContext) {
    hookFs(t);
    const signer = await makeSigner(t);
    const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
    // The other server: its own blob store over the same directory, the same database.
    const other = new BlobStore(server.server.ctx.blobs.root);
    await other.open();
    const artifact = await makeArtifact(t, { seed: 7, privateKey: signer.privateKey });
    assert.deepEqual(await uploadBlobs(server, artifact.dir, artifact.manifest), Object.keys(artifact.manifest.files).map(() => 201));
    // Uploaded two hours ago (an interrupted push), pushed again only now.
    const files = Object.values(artifact.manifest.files).map((file) => file.sha256);
    const then = new Date(Date.now() - 2 * HOUR_MS);
    for (const sha256 of files) await utimes(server.server.ctx.blobs.pathOf(sha256), then, then);
    const paths = new Set(files.map((sha256) => server.server.ctx.blobs.pathOf(sha256)));
    const otherGc = (hooks: Parameters<typeof runAs>[2] = {}) =>
      runAs('other server', () => collectBlobGarbage({ store: server.server.ctx.store, blobs: other }, { dryRun: false, minAgeSeconds: 3600, actor: 'test' }), hooks);
    return { server, artifact, files, paths, otherGc };
  }

  test('a push whose files the other server removes while it claims them is refused as files never uploaded, not a 500', async (t) => {
    const { server, artifact, paths, otherGc } = await setup(t);
    const before = await storeSnapshot(server);
    let collected = false;
    // The other server's whole collection runs just after this server found the first file, before it marks it as used.
    const collectAtFirstClaim = () => {
      collected = false;
      hookUnownedCalls({
        before: async (call) => {
          if (collected || call.fn !== 'utimes' || !paths.has(call.args[0] as string)) return;
          collected = true;
          await otherGc();
        },
      });
    };
    collectAtFirstClaim();
    const refused = await server.request('POST', '/api/models/iris/versions', { json: { manifest: artifact.manifest } });
    const body = (await refused.json()) as any;
    assert.equal(collected, true, 'the collection never ran');
    assert.equal(refused.status, 400, JSON.stringify(body));
    assert.match(body.error.message, /^manifest\.files\.[^:]+: blob [0-9a-f]{64} was not uploaded: upload it first \(PUT \/api\/blobs\/[0-9a-f]{64}, or Blobs\.UploadBlob over gRPC; models push does both\)$/);
    hookUnownedCalls({});
    const after = JSON.parse(await storeSnapshot(server));
    assert.deepEqual({ ...after, blobs: [], audit: 0 }, { ...JSON.parse(before), blobs: [], audit: 0 }, 'the refused push registered something');

    // Checking the push the same way lists the removed files as missing (it was a 500 as well).
    await uploadBlobs(server, artifact.dir, artifact.manifest);
    const then = new Date(Date.now() - 2 * HOUR_MS);
    for (const path of paths) await utimes(path, then, then);
    collectAtFirstClaim();
    const checked = await server.request('POST', '/api/models/iris/versions/check', { json: { manifest: artifact.manifest } });
    const check = (await checked.json()) as any;
    assert.equal(collected, true, 'the collection never ran');
    assert.equal(checked.status, 200, JSON.stringify(check));
    assert.deepEqual([...check.missingBlobs].sort(), [...paths].map((path) => path.slice(-64)).sort());
  });

  test('a push registered while the other server is about to remove its files keeps them: every file of the version downloads', async (t) => {
    const { server, artifact, files, paths, otherGc } = await setup(t);
    let registered: Response | undefined;
    // The registration runs whole just before the collection's first move or removal of one of its files.
    await otherGc({
      before: async (_index, call) => {
        if (registered || (call.fn !== 'rename' && call.fn !== 'unlink') || !paths.has(call.args[0] as string)) return;
        registered = await server.request('POST', '/api/models/iris/versions', { json: { manifest: artifact.manifest } });
      },
    });
    assert.ok(registered, 'the collection never came to remove a file');
    assert.equal(registered.status, 201, await registered.text());
    for (const sha256 of files) assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 200, `GET ${sha256} of the registered version`);
  });

  test('a download whose file the other server removes just after this server found it sends the whole file (HTTP) or every chunk (gRPC), not a 500', async (t) => {
    const { server, artifact, files } = await setup(t);
    const { sha256 } = artifact.manifest.files['tfjs/weights.bin']!;
    assert.ok(files.includes(sha256), 'the artifact has no tfjs/weights.bin');
    const file = await readFile(join(artifact.dir, 'tfjs/weights.bin'));
    const path = server.server.ctx.blobs.pathOf(sha256);
    /** Removes the file (as the other server's collection does) just after this server's first look at it. */
    const removeAfterFirstLook = () => {
      let removed = false;
      hookUnownedCalls({
        after: async (call) => {
          if (removed || call.args[0] !== path) return;
          removed = true;
          await unlink(path);
        },
      });
      return () => removed;
    };

    let removed = removeAfterFirstLook();
    const response = await server.request('GET', `/api/blobs/${sha256}`);
    const body = Buffer.from(await response.arrayBuffer());
    assert.equal(removed(), true, 'the file was never removed');
    assert.equal(response.status, 200, body.toString());
    assert.deepEqual(body, file);
    assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 404);

    await uploadBlobs(server, artifact.dir, artifact.manifest);
    removed = removeAfterFirstLook();
    const client = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
    t.after(() => client.close());
    const chunks = await client.stream<{ data: Buffer }>('DownloadBlob', { sha256, chunk_size: 1000 });
    assert.equal(removed(), true, 'the file was never removed');
    assert.deepEqual(Buffer.concat(chunks.map((chunk) => chunk.data)), file);
    await assert.rejects(client.stream('DownloadBlob', { sha256 }), /NOT_FOUND|no blob/);
  });
});
