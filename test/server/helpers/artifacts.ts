import { createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { generateSigningKeys, loadPrivateKey } from '../../../shared/artifact/signing-keys.ts';
import type { Manifest } from '../../../shared/artifact/manifest.ts';
import { writeArtifact } from '../../../shared/artifact/write-artifact.ts';
import type { TrainingRecord } from '../../../shared/artifact/training-record.ts';
import { initTfjs } from '../../../shared/model/tfjs-backend.ts';
import { toTfjsModel } from '../../../shared/model/tfjs-convert.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../../artifact/fixtures.ts';
import type { TestServer } from './test-server.ts';

export interface TestSigner {
  privateKey: KeyObject;
  publicKeyPath: string;
}

/** A fresh ed25519 pair in a temp directory (pass publicKeyPath to the server as a trusted key). */
export async function makeSigner(t: TestContext): Promise<TestSigner> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-signer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const files = await generateSigningKeys(dir);
  return { privateKey: await loadPrivateKey(files.privateKeyPath), publicKeyPath: files.publicKeyPath };
}

/**
 * A small signed classifier artifact (7 → `units` relu → 3 softmax); `seed` makes it distinct,
 * `parent` links its lineage, `version` fixes the manifest version, `training` adds a training.json.
 */
/** The data fingerprint of the fixtures' data set: a SHA-256, as prune writes one. */
export const FIXTURE_DATA_FINGERPRINT = createHash('sha256').update('fleetprune test fixtures').digest('hex');

export async function makeArtifact(
  t: TestContext,
  options: { seed: number; privateKey?: KeyObject; version?: string; parent?: string; units?: number; name?: string; task?: 'classification' | 'regression'; dataFingerprint?: string; training?: TrainingRecord },
): Promise<{ dir: string; manifest: Manifest }> {
  await initTfjs();
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-artifact-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const network = randomNetwork(options.seed, CLASSIFIER_FEATURES.length, [
    { units: options.units ?? 8, activation: 'relu' },
    options.task === 'regression' ? { units: 1, activation: 'linear' } : { units: 3, activation: 'softmax' },
  ]);
  const tfjsModel = toTfjsModel(network);
  const dir = join(root, 'artifact');
  try {
    const manifest = await writeArtifact(dir, {
      network,
      tfjsModel,
      privateKey: options.privateKey,
      training: options.training,
      manifest: {
        formatVersion: 1,
        name: options.name ?? 'iris',
        ...(options.version ? { version: options.version } : {}),
        createdAt: '2025-01-02T03:04:05.000Z',
        task: options.task ?? 'classification',
        features: CLASSIFIER_FEATURES,
        labels: options.task === 'regression' ? [] : ['a', 'b', 'c'],
        labelName: 'kind',
        lineage: {
          parentSha256: options.parent ?? null,
          epsilon: options.parent ? 0.1 : null,
          epsilonMode: options.parent ? 'relative' : null,
          // One data set for every fixture, so a pruned one's parent was trained on its data (the registry checks).
          dataFingerprint: options.dataFingerprint ?? FIXTURE_DATA_FINGERPRINT,
          method: options.parent ? 'odf2nna' : 'general',
          seed: options.seed,
        },
        metrics: { test: options.task === 'regression' ? { mse: 1, r2: 0.5 } : { accuracy: 0.9 } },
      },
    });
    return { dir, manifest };
  } finally {
    tfjsModel.dispose();
  }
}

/** PUTs every file of an artifact directory as a blob; returns the responses' statuses. */
export async function uploadBlobs(server: TestServer, dir: string, manifest: Manifest): Promise<number[]> {
  const statuses: number[] = [];
  for (const [path, file] of Object.entries(manifest.files)) {
    const response = await server.request('PUT', `/api/blobs/${file.sha256}`, {
      body: await readFile(join(dir, path)),
      headers: { 'content-type': 'application/octet-stream' },
    });
    await response.arrayBuffer();
    statuses.push(response.status);
  }
  return statuses;
}

/** Uploads the blobs and registers the manifest under `model`; returns the registration response. */
export async function pushArtifact(server: TestServer, model: string, dir: string, manifest: Manifest): Promise<Response> {
  await uploadBlobs(server, dir, manifest);
  return server.request('POST', `/api/models/${model}/versions`, { json: { manifest } });
}

/** What a bad request must not change: versions, aliases, audit entries and stored blobs. */
export async function storeSnapshot(server: TestServer): Promise<string> {
  const { store, blobs } = server.server.ctx;
  const models = await store.models.listModels();
  const versions = [];
  for (const model of models) versions.push(...(await store.models.listVersions(model.name, { limit: 1000 })));
  return JSON.stringify({
    models,
    versions: versions.map((v) => [v.model, v.version, v.artifactId, v.aliases, v.retired]),
    audit: await store.audit.count(),
    blobs: await blobs.list(),
  });
}
