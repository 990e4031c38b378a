import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { makeArtifact, makeSigner, pushArtifact, storeSnapshot, uploadBlobs } from './helpers/artifacts.ts';
import { runCli } from './helpers/run-cli.ts';
import { STORE_ENGINES, type StoreEngineName } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';

const HOUR_S = 3600;

async function setup(t: TestContext, engine: StoreEngineName) {
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { engine, config: { trustedKeys: [signer.publicKeyPath] } });
  return server ? { server, signer } : null;
}

/** PUTs `bytes` as a blob that no version lists; returns its sha256. */
async function uploadOrphan(server: TestServer, text: string): Promise<string> {
  const bytes = Buffer.from(text);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const response = await server.request('PUT', `/api/blobs/${sha256}`, { body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  assert.ok(response.status === 201 || response.status === 200, `upload status ${response.status}`);
  await response.arrayBuffer();
  return sha256;
}

/** Makes a blob look last stored `seconds` ago. */
async function age(server: TestServer, sha256: string, seconds: number): Promise<void> {
  const then = new Date(Date.now() - seconds * 1000);
  await utimes(server.server.ctx.blobs.pathOf(sha256), then, then);
}

async function gc(server: TestServer, body: unknown, token = ADMIN_TOKEN): Promise<{ status: number; json: any }> {
  const response = await server.request('POST', '/api/blobs/gc', { json: body, token });
  return { status: response.status, json: await response.json() };
}

for (const engine of STORE_ENGINES) {
  describe(`blob garbage collection on ${engine}`, () => {
    test('removes only unreferenced blobs idle past the grace period; dry run removes nothing; audited and counted', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 5, privateKey: signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      const referenced = Object.values(artifact.manifest.files).map((file) => file.sha256);
      const stale = await uploadOrphan(server, 'an interrupted push, two hours ago');
      const fresh = await uploadOrphan(server, 'a push whose registration is on its way');
      const reuploaded = await uploadOrphan(server, 'uploaded long ago, uploaded again just now');
      for (const sha256 of [...referenced, stale, reuploaded]) await age(server, sha256, 2 * HOUR_S);
      // Uploading an existing blob again marks it as just used, so the push that follows is safe.
      assert.equal(await uploadOrphan(server, 'uploaded long ago, uploaded again just now'), reuploaded);

      const before = await storeSnapshot(server);
      const dry = await gc(server, { dryRun: true });
      assert.equal(dry.status, 200, JSON.stringify(dry.json));
      assert.deepEqual(dry.json.removed.map((blob: { sha256: string }) => blob.sha256), [stale]);
      assert.equal(dry.json.dryRun, true);
      assert.equal(await storeSnapshot(server), before, 'a dry run changed the store');

      const run = await gc(server, {});
      assert.equal(run.status, 200, JSON.stringify(run.json));
      assert.deepEqual(run.json, {
        dryRun: false,
        scanned: referenced.length + 3,
        referenced: referenced.length,
        young: 2,
        removed: [{ sha256: stale, bytes: Buffer.byteLength('an interrupted push, two hours ago') }],
        staleUploads: 0,
        freedBytes: Buffer.byteLength('an interrupted push, two hours ago'),
      });
      const remaining = await server.server.ctx.blobs.list();
      assert.deepEqual(remaining, [...referenced, fresh, reuploaded].sort());
      assert.equal((await server.request('GET', `/api/blobs/${stale}`)).status, 404);
      for (const sha256 of referenced) assert.equal((await server.request('GET', `/api/blobs/${sha256}`)).status, 200);

      const audit = (await (await server.request('GET', '/api/audit')).json()) as { entries: any[] };
      const entry = audit.entries.find((e) => e.action === 'blobs.gc');
      assert.ok(entry, 'the collection is audited');
      assert.deepEqual(entry.details.removed, [stale]);
      const metrics = await (await server.request('GET', '/metrics', { token: null })).text();
      assert.match(metrics, new RegExp(`^fleetprune_blob_gc_freed_bytes_total ${Buffer.byteLength('an interrupted push, two hours ago')}$`, 'm'));

      // With a shorter grace period the just-uploaded orphans go too; the referenced files stay.
      await age(server, fresh, 120);
      await age(server, reuploaded, 120);
      // Partial uploads left by a crash go once idle as long; one still being written stays.
      const tmp = join(server.dataDir, 'blobs', 'tmp');
      await writeFile(join(tmp, 'crashed-upload'), Buffer.alloc(1000));
      await writeFile(join(tmp, 'upload-in-flight'), Buffer.alloc(10));
      const twoMinutesAgo = new Date(Date.now() - 120_000);
      await utimes(join(tmp, 'crashed-upload'), twoMinutesAgo, twoMinutesAgo);
      const short = await gc(server, { minAgeSeconds: 60 });
      assert.deepEqual(short.json.removed.map((blob: { sha256: string }) => blob.sha256).sort(), [fresh, reuploaded].sort());
      assert.equal(short.json.staleUploads, 1);
      assert.deepEqual(await readdir(tmp), ['upload-in-flight']);
      assert.deepEqual(await server.server.ctx.blobs.list(), [...referenced].sort());
      // A removed blob can be uploaded again.
      assert.equal(await uploadOrphan(server, 'an interrupted push, two hours ago'), stale);
    });

    test('bad requests and non-admin tokens are refused and remove nothing', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server } = env;
      const orphan = await uploadOrphan(server, 'orphan');
      await age(server, orphan, 2 * HOUR_S);
      const operator = ((await (await server.request('POST', '/api/tokens', { json: { role: 'operator' } })).json()) as any).token;
      const before = await storeSnapshot(server);
      const denied = await gc(server, {}, operator);
      assert.equal(denied.status, 403);
      const tooShort = await gc(server, { minAgeSeconds: 5 });
      assert.equal(tooShort.status, 400);
      assert.match(tooShort.json.error.message, /minAgeSeconds: must be at least 60 s/);
      // One limit, the one that matters, not also the largest safe integer's.
      for (const huge of [1e12, 1e30]) {
        const tooLong = await gc(server, { minAgeSeconds: huge });
        assert.equal(tooLong.status, 400, String(huge));
        assert.equal(tooLong.json.error.message, 'body.minAgeSeconds: must be at most 315360000 s (ten years)', String(huge));
      }
      const unknown = await gc(server, { dryrun: true });
      assert.equal(unknown.status, 400);
      assert.match(unknown.json.error.message, /dryrun: unknown field/);
      const wrongType = await gc(server, { dryRun: 'yes' });
      assert.equal(wrongType.status, 400);
      assert.equal(await storeSnapshot(server), before);
    });
  });
}

test('blob GC over gRPC and the CLI: dry run, removal, a clear error for a bad --min-age', async (t) => {
  const env = await setup(t, 'sqlite');
  if (!env) return;
  const { server } = env;
  const orphan = await uploadOrphan(server, 'left by a push that never registered');
  await age(server, orphan, 2 * HOUR_S);
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];

  const dry = await runCli(['blobs', 'gc', '--dry-run', ...connection]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, new RegExp(`^${orphan}\\s+${Buffer.byteLength('left by a push that never registered')}$`, 'm'));
  assert.match(dry.stderr, /^would remove 1 of 1 files and 0 partial uploads \(36 bytes\); kept 0 referenced and 0 younger than 3600 s$/m);
  assert.deepEqual(await server.server.ctx.blobs.list(), [orphan]);

  // The CLI refuses what the server would refuse (or read as "unset": 0), naming the flag.
  for (const minAge of ['10s', '0s', '400ms', '59s']) {
    const tooShort = await runCli(['blobs', 'gc', '--min-age', minAge, ...connection]);
    assert.equal(tooShort.code, 2, minAge);
    assert.match(tooShort.stderr, /option '--min-age <duration>' argument .* is invalid\. must be at least 60s, so an upload whose registration is on its way is never removed/, minAge);
  }
  const tooLong = await runCli(['blobs', 'gc', '--min-age', '99999999999h', ...connection]);
  assert.equal(tooLong.code, 2);
  assert.match(tooLong.stderr, /option '--min-age <duration>' argument '99999999999h' is invalid\. must be at most 3650 days/);
  assert.doesNotMatch(tooLong.stderr, /min_age_s/);
  // Its examples are ones it takes: not 500ms or 30s (under its minimum); days and weeks as a token's lifetime takes them.
  for (const bad of ['soon', '7 days']) {
    const badDuration = await runCli(['blobs', 'gc', '--min-age', bad, ...connection]);
    assert.equal(badDuration.code, 2, bad);
    assert.match(badDuration.stderr, /--min-age <duration>.*must be a duration of at least 60s, such as 90s, 30m, 1h, 7d or 2w/, bad);
  }
  // A week, as tokens create --expires-in says it: nothing is that old here, so nothing is removed.
  const week = await runCli(['blobs', 'gc', '--min-age', '7d', '--dry-run', '--json', ...connection]);
  assert.equal(week.code, 0, week.stderr);
  assert.deepEqual(JSON.parse(week.stdout).removed, []);
  assert.deepEqual(await server.server.ctx.blobs.list(), [orphan]);

  const removed = await runCli(['blobs', 'gc', '--min-age', '1h', '--json', ...connection]);
  assert.equal(removed.code, 0, removed.stderr);
  const result = JSON.parse(removed.stdout);
  assert.equal(result.removed[0].sha256, orphan);
  assert.equal(result.freedBytes, 36);
  assert.deepEqual(await server.server.ctx.blobs.list(), []);

  // A device token may download blobs but not collect them.
  const device = ((await (await server.request('POST', '/api/tokens', { json: { role: 'device' } })).json()) as any).token;
  const client = grpcClient(server.grpcAddress, 'Blobs', device);
  t.after(() => client.close());
  await assert.rejects(client.call('CollectGarbage', {}), /PERMISSION_DENIED|permission denied/i);
});

test('a claimed blob is kept by a collection that started before the claim; a collected one fails registration cleanly', async (t) => {
  const env = await setup(t, 'sqlite');
  if (!env) return;
  const { server, signer } = env;
  const { blobs } = server.server.ctx;
  const artifact = await makeArtifact(t, { seed: 6, privateKey: signer.privateKey });
  const files = Object.values(artifact.manifest.files).map((file) => file.sha256);
  // Blobs uploaded two hours ago, registration only now: the collection's cutoff was taken before
  // the registration claimed them, yet the collection checks their age when it comes to each.
  // (Claims at every step of a collection, also another server's: blob-gc-shared-directory.test.ts.)
  assert.deepEqual(await uploadBlobs(server, artifact.dir, artifact.manifest), files.map(() => 201));
  for (const sha256 of files) await age(server, sha256, 2 * HOUR_S);
  const cutoff = Date.now() - HOUR_S * 1000;
  for (const sha256 of files) assert.ok(await blobs.claim(sha256), `the claim of ${sha256} found nothing`);
  for (const sha256 of files) assert.equal(await blobs.setAside(sha256, cutoff), null, 'a claimed blob was moved to be removed');

  for (const sha256 of files) await age(server, sha256, 2 * HOUR_S);
  assert.equal((await gc(server, {})).json.removed.length, files.length);
  const before = await storeSnapshot(server);
  const refused = await server.request('POST', '/api/models/iris/versions', { json: { manifest: artifact.manifest } });
  assert.equal(refused.status, 400);
  assert.match(((await refused.json()) as any).error.message, /was not uploaded: upload it first \(PUT \/api\/blobs\/[0-9a-f]{64}, or Blobs\.UploadBlob/);
  assert.equal(await storeSnapshot(server), before);
});
