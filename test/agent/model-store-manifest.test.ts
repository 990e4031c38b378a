import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ArtifactFetcher } from '../../agent/artifact-fetcher.ts';
import { DataDir } from '../../agent/data-dir.ts';
import { ModelStore } from '../../agent/model-store.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, ManifestSchema, ONNX_FILE, artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import type { Assignment } from '../../shared/protocol/payloads.ts';
import { ArtifactHttpServer } from '../helpers/artifact-http-server.ts';

/**
 * docs/agent.md: the agent stores a model's manifest.json as the bytes it downloaded and verified,
 * so a manifest the server accepts (compact JSON within MAX_MANIFEST_BYTES) verifies again at every
 * later load (start, rollback from disk) — no re-serialisation can make it larger than the limit.
 */

const TOKEN = 'model-store-manifest-token';
const ONNX = Buffer.from('model.onnx bytes (the store checks size and sha256, not the format)');

/** A signed regression manifest with `features` inputs (names f0, f1, …): ~9 bytes of compact JSON per feature. */
function wideManifest(features: number, privateKey: KeyObject): Manifest {
  const file = { sha256: sha256Hex(ONNX), bytes: ONNX.length };
  const unsigned = ManifestSchema.parse({
    formatVersion: 1,
    name: 'wide',
    version: '1',
    createdAt: '2026-01-01T00:00:00.000Z',
    task: 'regression',
    features: Array.from({ length: features }, (_, i) => `f${i}`),
    labels: [],
    labelName: 'y',
    architecture: { layers: [1], inputs: features, params: features + 1, flopsPerSample: 2 * features + 1, activations: ['linear'] },
    lineage: { parentSha256: null, epsilon: null, epsilonMode: null, dataFingerprint: 'x', method: 'general', seed: 1 },
    metrics: { test: { mse: 1 } },
    files: { [ONNX_FILE]: file, 'tfjs/model.json': file, 'tfjs/weights.bin': file },
  });
  return signManifest(unsigned, privateKey);
}

async function dataDirFor(t: TestContext): Promise<DataDir> {
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-model-store-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dataDir = new DataDir(root);
  await dataDir.prepare();
  return dataDir;
}

/** Writes a model directory as an earlier agent did: manifest.json pretty-printed, model.onnx beside it. */
async function writeLegacyModel(dataDir: DataDir, manifest: Manifest): Promise<string> {
  const id = artifactId(manifest);
  await mkdir(dataDir.modelDir(id), { recursive: true });
  await writeFile(join(dataDir.modelDir(id), MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(join(dataDir.modelDir(id), ONNX_FILE), ONNX);
  return id;
}

test('a manifest just under MAX_MANIFEST_BYTES as served (compact JSON) is stored as downloaded and verifies again after a restart', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const manifest = wideManifest(110_000, privateKey);
  const served = Buffer.from(JSON.stringify(manifest)); // as GET /api/artifacts/:id/manifest.json answers
  assert.ok(served.length <= MAX_MANIFEST_BYTES && served.length > 0.9 * MAX_MANIFEST_BYTES, `the fixture is meant to be just under the limit: ${served.length} bytes`);
  assert.ok(Buffer.byteLength(JSON.stringify(manifest, null, 2)) > MAX_MANIFEST_BYTES, 'the fixture is meant to be over the limit pretty-printed');
  const id = artifactId(manifest);
  const http = await ArtifactHttpServer.start(TOKEN);
  t.after(() => http.close());
  http.setManifest(id, served);
  http.setBlob(sha256Hex(ONNX), ONNX);
  const dataDir = await dataDirFor(t);

  const fetcher = new ArtifactFetcher({ url: http.url, token: TOKEN, publicKey }, dataDir);
  const assignment: Assignment = { schema: 1, id: 'assign-wide-0001', issuedAt: '2026-01-01T00:00:00.000Z', model: 'wide', version: '1', sha256: id, url: http.manifestUrl(id), role: 'active', seq: 1, signature: `${'A'.repeat(86)}==` };
  const verified = await fetcher.fetchVerifiedManifest(assignment);
  const fetched = await fetcher.downloadModel(verified);
  const installed = await new ModelStore(dataDir).install(verified, fetched.onnxPath, publicKey);
  assert.equal(installed.artifactId, id);

  // A restart: a new store on the same data directory re-checks everything, the signature included.
  const again = await new ModelStore(dataDir).loadVerified(id, publicKey);
  assert.ok(!('failure' in again), `the installed model fails verification: ${'failure' in again ? again.failure : ''}`);
  assert.deepEqual(again.manifest, manifest);
  const stored = await readFile(join(dataDir.modelDir(id), MANIFEST_FILE));
  assert.ok(stored.equals(served), `manifest.json holds the ${served.length} bytes downloaded, not ${stored.length} others`);
});

test('a pretty-printed manifest.json an earlier agent stored still loads, also past MAX_MANIFEST_BYTES when its compact JSON is within it', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const dataDir = await dataDirFor(t);
  for (const features of [3, 110_000]) {
    const manifest = wideManifest(features, privateKey);
    const id = await writeLegacyModel(dataDir, manifest);
    const loaded = await new ModelStore(dataDir).loadVerified(id, publicKey);
    assert.ok(!('failure' in loaded), `${features} features: ${'failure' in loaded ? loaded.failure : ''}`);
    assert.deepEqual(loaded.manifest, manifest);
  }
  const size = (await stat(join(dataDir.modelDir(artifactId(wideManifest(110_000, privateKey))), MANIFEST_FILE))).size;
  assert.ok(size > MAX_MANIFEST_BYTES, `the wide legacy manifest.json is meant to be over the limit on disk: ${size} bytes`);
});

test('a stored manifest over MAX_MANIFEST_BYTES even as compact JSON fails verification in one line naming the file, its compact size and the limit', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const dataDir = await dataDirFor(t);
  const manifest = wideManifest(130_000, privateKey);
  const compact = Buffer.byteLength(JSON.stringify(manifest));
  assert.ok(compact > MAX_MANIFEST_BYTES, `the fixture is meant to be over the limit: ${compact} bytes`);
  const id = await writeLegacyModel(dataDir, manifest);
  const loaded = await new ModelStore(dataDir).loadVerified(id, publicKey);
  assert.ok('failure' in loaded, 'a manifest no device could have downloaded is not loaded');
  assert.equal(loaded.failure, `${join(dataDir.modelDir(id), MANIFEST_FILE)}: ${compact} bytes as compact JSON, more than a manifest can be (${MAX_MANIFEST_BYTES})`);
});
