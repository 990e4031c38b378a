import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact, pushArtifact } from './helpers/artifacts.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** A copy of a blob damaged on the server's disk: never served as good, set aside once found, restored by pushing again. */

const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const damagedCount = async (baseUrl: string) => Number(/^fleetprune_blobs_damaged_total (\d+)$/m.exec(await (await fetch(`${baseUrl}/metrics`)).text())?.[1]);

test('a stored copy cut short fails its download (not a 200 of the wrong bytes), is set aside, and models push of the registered artifact uploads it again', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 41, privateKey: key, units: 64 });
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  const { sha256 } = artifact.manifest.files['model.onnx']!;
  const file = await readFile(join(artifact.dir, 'model.onnx'));
  const stored = join(server.dataDir, 'blobs', sha256.slice(0, 2), sha256);
  await truncate(stored, 1000);

  // Found before anything is sent (its only piece is the one held back): an error, where the
  // connection closed without a status line ("Empty reply from server").
  const found = await server.request('GET', `/api/blobs/${sha256}`);
  assert.equal(found.status, 500);
  assert.equal(found.headers.get('etag'), null, 'no header of the blob\'s');
  assert.deepEqual(await found.json(), {
    error: { code: 'data_loss', message: `the server's copy of blob ${sha256} is damaged (its bytes hash to ${sha256Of(file.subarray(0, 1000))}); nothing of it was sent. Push the artifact again to restore it` },
  });
  assert.equal(await damagedCount(server.baseUrl), 1);
  // Set aside: the blob reads as not stored, and says why.
  const [aside] = await readdir(join(server.dataDir, 'blobs', 'damaged'));
  assert.match(aside!, new RegExp(`^${sha256}\\.`));
  const gone = await server.request('GET', `/api/blobs/${sha256}`);
  assert.equal(gone.status, 404);
  assert.match(((await gone.json()) as { error: { message: string } }).error.message, /found damaged and set aside; push an artifact that lists it again/);

  // Pushing the registered artifact again restores the file, and registers nothing.
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const repaired = await runCli(['models', 'push', artifact.dir, ...connection]);
  assert.equal(repaired.code, 0, repaired.stderr);
  assert.equal(repaired.stdout, `iris@1 is registered already (artifact ${artifactId(artifact.manifest)}); uploaded again the file the server had lost (model.onnx)\n`);
  assert.deepEqual(await readFile(stored), file);
  const again = await server.request('GET', `/api/blobs/${sha256}`);
  assert.deepEqual(Buffer.from(await again.arrayBuffer()), file);
  const versions = (await (await server.request('GET', '/api/models/iris/versions')).json()) as { versions: unknown[] };
  assert.equal(versions.versions.length, 1);
  // With every file stored, a push of it is refused as before.
  const refused = await runCli(['models', 'push', artifact.dir, ...connection]);
  assert.equal(refused.code, 2);
  assert.equal(refused.stderr, `fleetprune: artifact ${artifactId(artifact.manifest)} is already registered as iris@1\n`);
});

test('a copy changed in place (same size) fails a gRPC download with DATA_LOSS; a range of it is served as stored', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 42, privateKey: key, units: 64 });
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  const { sha256 } = artifact.manifest.files['model.onnx']!;
  const stored = join(server.dataDir, 'blobs', sha256.slice(0, 2), sha256);
  const bytes = await readFile(stored);
  bytes[bytes.length - 1] ^= 0xff;
  await writeFile(stored, bytes);

  const client = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
  t.after(() => client.close());
  // A resumed download (from an offset) cannot be checked whole: the client's own check catches it.
  const tail = await client.stream<{ data: Buffer }>('DownloadBlob', { sha256, offset: 10 });
  assert.deepEqual(Buffer.concat(tail.map((chunk) => chunk.data)), bytes.subarray(10));
  await assert.rejects(client.stream('DownloadBlob', { sha256, chunk_size: 1000 }), (error: { code: number; details: string }) => {
    assert.equal(error.code, 15); // DATA_LOSS
    assert.match(error.details, new RegExp(`^the server's copy of blob ${sha256} is damaged \\(its bytes hash to ${sha256Of(bytes)}\\)`));
    return true;
  });
  assert.equal(await damagedCount(server.baseUrl), 1);
  await assert.rejects(client.stream('DownloadBlob', { sha256 }), /NOT_FOUND.*found damaged and set aside/);
});

test('uploading a file again replaces a stored copy cut short, and the push check lists it as missing', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 43, privateKey: key, units: 64 });
  const { sha256 } = artifact.manifest.files['model.onnx']!;
  const file = await readFile(join(artifact.dir, 'model.onnx'));
  const put = () => server.request('PUT', `/api/blobs/${sha256}`, { body: file, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal((await put()).status, 201);
  const stored = join(server.dataDir, 'blobs', sha256.slice(0, 2), sha256);
  await truncate(stored, 1000);

  const check = await server.request('POST', '/api/models/iris/versions/check', { json: { manifest: artifact.manifest } });
  assert.ok(((await check.json()) as { missingBlobs: string[] }).missingBlobs.includes(sha256), 'a stored copy of another size is to be uploaded');
  const again = await put();
  assert.equal(again.status, 200);
  assert.deepEqual(await again.json(), { sha256, bytes: file.length, created: false });
  assert.deepEqual(await readFile(stored), file);
});
