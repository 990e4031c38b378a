import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KeyObject } from 'node:crypto';
import { artifactId, canonicalJson, ManifestSchema } from '../../shared/artifact/manifest.ts';
import { readManifest } from '../../shared/artifact/read-artifact.ts';
import { generateSigningKeys, keyId, loadPrivateKey, loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { loadTfjsModel, loadTfjsNetwork } from '../../shared/artifact/tfjs-files.ts';
import { forward } from '../../shared/model/dense-network.ts';
import * as ort from 'onnxruntime-node';
import { ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-io.ts';
import { verifyArtifact } from '../../shared/artifact/verify-artifact.ts';
import { writeArtifact } from '../../shared/artifact/write-artifact.ts';
import { toTfjsModel } from '../../shared/model/tfjs-convert.ts';
import { UserError } from '../../shared/util/errors.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { CLASSIFIER_FEATURES, randomNetwork, rawRows, writeSampleArtifact } from './fixtures.ts';

let keyDir: string;
let privateKey: KeyObject;
let publicKey: KeyObject;

before(async () => {
  keyDir = await mkdtemp(join(tmpdir(), 'fleetprune-keys-'));
  await generateSigningKeys(keyDir);
  privateKey = await loadPrivateKey(join(keyDir, 'signing.key'));
  publicKey = await loadPublicKey(join(keyDir, 'signing.pub'));
});

after(() => rm(keyDir, { recursive: true, force: true }));

test('canonicalJson sorts keys at every depth and drops whitespace', () => {
  assert.equal(canonicalJson({ b: [{ z: 1, a: 'x' }], a: null, c: undefined, '10': true, '9': 2 }), '{"10":true,"9":2,"a":null,"b":[{"a":"x","z":1}]}');
});

test('a signed artifact verifies, lists its files, and describes the network', async (t) => {
  const dir = join(await tempDir(t), 'model');
  const manifest = await writeSampleArtifact(dir, privateKey);

  const result = await verifyArtifact(dir, publicKey);
  assert.deepEqual(result.failures, []);
  assert.equal(result.ok, true);
  assert.deepEqual(result.manifest, manifest);
  assert.deepEqual(await readManifest(dir), manifest);

  assert.deepEqual(Object.keys(manifest.files).sort(), ['model.onnx', 'tfjs/model.json', 'tfjs/scaling.json', 'tfjs/weights.bin']);
  assert.equal(manifest.files['model.onnx']!.bytes, (await stat(join(dir, 'model.onnx'))).size);
  assert.deepEqual(manifest.architecture, {
    layers: [8, 3],
    inputs: 7,
    params: 7 * 8 + 8 + 8 * 3 + 3,
    flopsPerSample: 2 * 7 * 8 + 8 + 2 * 8 * 3 + 3,
    activations: ['relu', 'softmax'],
  });
  assert.equal(manifest.signature?.keyId, keyId(publicKey));
  assert.match(artifactId(manifest), /^[0-9a-f]{64}$/);
  assert.equal(artifactId(manifest), artifactId({ ...manifest, signature: undefined }), 'the id ignores the signature');
  // Only the artifact itself is left: no staging directories next to it.
  assert.deepEqual(await readdir(join(dir, '..')), ['model']);
});

test('loadTfjsModel reads back exactly the weights that were written', async (t) => {
  const dir = join(await tempDir(t), 'model');
  await writeSampleArtifact(dir, privateKey);
  const network = randomNetwork(7, CLASSIFIER_FEATURES.length, [
    { units: 8, activation: 'relu' },
    { units: 3, activation: 'softmax' },
  ]);
  const model = await loadTfjsModel(join(dir, 'tfjs'));
  try {
    assert.equal(model.layers.length, 2);
    model.layers.forEach((layer, index) => {
      const [kernel, bias] = layer.getWeights();
      assert.deepEqual(kernel!.shape, [network.layers[index]!.inputs, network.layers[index]!.units]);
      assert.deepEqual(Float32Array.from(kernel!.dataSync()), network.layers[index]!.weights);
      assert.deepEqual(Float32Array.from(bias!.dataSync()), network.layers[index]!.bias);
      assert.equal((layer.getConfig() as { activation: string }).activation, network.layers[index]!.activation);
    });
  } finally {
    model.dispose();
  }
  const modelJson = JSON.parse(await readFile(join(dir, 'tfjs', 'model.json'), 'utf8'));
  assert.equal(modelJson.format, 'layers-model');
  assert.equal(modelJson.convertedBy, null);
  assert.deepEqual(modelJson.weightsManifest[0].paths, ['weights.bin']);
});

test('the tfjs model stands on its own: with tfjs/scaling.json it takes raw features and matches model.onnx within 1e-4', async (t) => {
  const network = randomNetwork(11, 4, [{ units: 6, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 150, scale: 40 });
  const tfjsModel = toTfjsModel(network);
  const dir = join(await tempDir(t), 'regressor');
  try {
    await writeArtifact(dir, {
      network,
      tfjsModel,
      privateKey,
      manifest: {
        formatVersion: 1,
        name: 'sample-regressor',
        createdAt: '2025-01-02T03:04:05.000Z',
        task: 'regression',
        features: ['a', 'b', 'c', 'd'],
        labels: [],
        labelName: 'y',
        lineage: { parentSha256: null, epsilon: null, epsilonMode: null, dataFingerprint: 'b'.repeat(64), method: 'general', seed: 11 },
        metrics: { test: { mse: 1, r2: 0.5 } },
      },
    });
  } finally {
    tfjsModel.dispose();
  }
  assert.equal((await verifyArtifact(dir, publicKey)).ok, true, 'scaling.json is hashed and signed with the rest');
  const loaded = await loadTfjsNetwork(join(dir, 'tfjs'));
  assert.deepEqual([loaded.inputMean, loaded.inputScale, loaded.target], [network.inputMean, network.inputScale, network.target]);
  const rows = rawRows(3, network, 32);
  const session = await ort.InferenceSession.create(await readFile(join(dir, 'model.onnx')));
  const output = (await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]) }))[ONNX_OUTPUT]!.data as Float32Array;
  await session.release();
  const predictions = forward(loaded, rows);
  rows.forEach((_, r) => {
    const [tfjsValue] = predictions[r]!;
    // Predictions are in the target's units (around 150), not standardized ones.
    assert.ok(Math.abs(tfjsValue! - output[r]!) <= 1e-4 * Math.max(1, Math.abs(output[r]!)), `row ${r}: tfjs ${tfjsValue} vs onnx ${output[r]}`);
  });

  // A regressor without its target scaling, a damaged file, or none at all (an older artifact): named, not a stack trace.
  await writeFile(join(dir, 'tfjs', 'scaling.json'), JSON.stringify({ inputMean: [1, 2, 3, 4], inputScale: [1, 1, 1, 1], target: null }));
  await assert.rejects(loadTfjsNetwork(join(dir, 'tfjs')), (error: unknown) => error instanceof UserError && /scaling\.json: a regressor needs its target scaling$/.test(error.message));
  await rm(join(dir, 'tfjs', 'scaling.json'));
  await assert.rejects(loadTfjsNetwork(join(dir, 'tfjs')), (error: unknown) => error instanceof UserError && /no scaling\.json: the artifact was written before it existed/.test(error.message));
  // The artifact's own directory given for its tfjs/ one is named as such, not as an old artifact.
  await assert.rejects(loadTfjsNetwork(dir), (error: unknown) => error instanceof UserError && error.message === `${dir}: an artifact directory; loadTfjsNetwork reads its tfjs model's directory, ${join(dir, 'tfjs')}`);
  await writeFile(join(dir, 'tfjs', 'scaling.json'), '{"inputMean":[1],"inputScale":[0],"target":null}');
  await assert.rejects(loadTfjsNetwork(join(dir, 'tfjs')), (error: unknown) => error instanceof UserError && /scaling\.json: inputScale\.0: /.test(error.message));
});

test('an unsigned artifact is written with a valid manifest but has no signature', async (t) => {
  const dir = join(await tempDir(t), 'model');
  const manifest = await writeSampleArtifact(dir);
  assert.equal(manifest.signature, undefined);
  assert.ok(ManifestSchema.safeParse(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'))).success);
});

test('writing over an existing artifact replaces it whole; other non-empty directories are left alone', async (t) => {
  const root = await tempDir(t);
  const dir = join(root, 'model');
  await writeSampleArtifact(dir);
  await writeFile(join(dir, 'report.json'), '{}');
  const signed = await writeSampleArtifact(dir, privateKey);
  assert.ok(signed.signature);
  assert.deepEqual((await readdir(dir)).sort(), ['manifest.json', 'model.onnx', 'tfjs']);
  assert.equal((await verifyArtifact(dir, publicKey)).ok, true);

  const empty = join(root, 'empty');
  await mkdir(empty);
  await writeSampleArtifact(empty, privateKey);
  assert.equal((await verifyArtifact(empty, publicKey)).ok, true);

  const other = join(root, 'other');
  await mkdir(other);
  await writeFile(join(other, 'notes.txt'), 'keep me');
  await assert.rejects(writeSampleArtifact(other, privateKey), (error: unknown) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, /non-empty directory without manifest\.json/);
    assert.ok(error.message.includes(other));
    return true;
  });
  assert.deepEqual(await readdir(other), ['notes.txt']);
  assert.deepEqual((await readdir(root)).sort(), ['empty', 'model', 'other'], 'no staging directories are left behind');
});

test('an unwritable output location is a UserError naming the path', async (t) => {
  const root = await tempDir(t);
  await writeFile(join(root, 'file'), '');
  const dir = join(root, 'file', 'model');
  await assert.rejects(writeSampleArtifact(dir, privateKey), (error: unknown) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, /^cannot write artifact to /);
    assert.ok(error.message.includes(dir));
    return true;
  });
});

test('an invalid model name is a UserError', async (t) => {
  const root = await tempDir(t);
  const manifest = await writeSampleArtifact(join(root, 'model'));
  const { architecture: _architecture, files: _files, ...described } = manifest;
  const network = randomNetwork(7, CLASSIFIER_FEATURES.length, [{ units: 3, activation: 'softmax' }]);
  const tfjsModel = toTfjsModel(network);
  t.after(() => tfjsModel.dispose());
  await assert.rejects(
    writeArtifact(join(root, 'bad'), { network, tfjsModel, manifest: { ...described, name: 'no spaces allowed' } }),
    (error: unknown) => error instanceof UserError && /^artifact manifest: name: must be 1-64 characters/.test(error.message),
  );
  assert.deepEqual(await readdir(root), ['model']);
});

test('the CLI verifies a signed artifact: exit 0 and `ok <name> <artifactId>`', async (t) => {
  const dir = join(await tempDir(t), 'model');
  const manifest = await writeSampleArtifact(dir, privateKey);
  const result = await runCli(['verify', dir, '--public-key', join(keyDir, 'signing.pub')]);
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);
  assert.equal(result.stdout, `ok sample-classifier ${artifactId(manifest)}\n`);
});

test('the CLI rejects a missing artifact directory or key file with exit 2 and one line', async (t) => {
  const root = await tempDir(t);
  const missingDir = await runCli(['verify', join(root, 'nope'), '--public-key', join(keyDir, 'signing.pub')]);
  assert.equal(missingDir.code, 2);
  assert.equal(missingDir.stderr, `fleetprune: ${join(root, 'nope')}: no such artifact directory\n`);
  const aFile = await runCli(['verify', join(keyDir, 'signing.pub'), '--public-key', join(keyDir, 'signing.pub')]);
  assert.equal(aFile.code, 2);
  assert.equal(aFile.stderr, `fleetprune: ${join(keyDir, 'signing.pub')}: not a directory (give the artifact directory, the one holding manifest.json)\n`);

  const missingKey = await runCli(['verify', root, '--public-key', join(root, 'missing.pub')]);
  assert.equal(missingKey.code, 2);
  assert.match(missingKey.stderr, /^fleetprune: --public-key: cannot read public key .*missing\.pub: no such file or directory\n$/);

  const privateAsPublic = await runCli(['verify', root, '--public-key', join(keyDir, 'signing.key')]);
  assert.equal(privateAsPublic.code, 2);
  assert.match(privateAsPublic.stderr, /^fleetprune: --public-key: .*signing\.key: is a private key; pass the public key \(signing\.pub\)\n$/);

  // An empty path (a shell variable left unset) is named as such, not as a file called "".
  const emptyDir = await runCli(['verify', '', '--public-key', join(keyDir, 'signing.pub')]);
  assert.equal(emptyDir.code, 2);
  assert.equal(emptyDir.stderr, "fleetprune: the artifact directory's path is empty\n");
  const emptyKey = await runCli(['verify', root, '--public-key', '']);
  assert.equal(emptyKey.code, 2);
  assert.equal(emptyKey.stderr, 'fleetprune: --public-key: the path is empty\n');
});
