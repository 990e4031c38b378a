import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import onnxProto from 'onnx-proto';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { startTestServer } from './helpers/test-server.ts';

const { onnx } = onnxProto;

/** A signed manifest can list any bytes as model.onnx: the registry refuses one every device would refuse at install. */

test('a model.onnx that is not ONNX or is empty is refused at registration; nothing is registered', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const resigned = async (seed: number, onnx: Buffer) => {
    const artifact = await makeArtifact(t, { seed, privateKey: signer.privateKey });
    let manifest = artifact.manifest;
    await writeFile(join(artifact.dir, 'model.onnx'), onnx);
    manifest = { ...manifest, files: { ...manifest.files, 'model.onnx': { sha256: createHash('sha256').update(onnx).digest('hex'), bytes: onnx.length } } };
    return { dir: artifact.dir, manifest: signManifest(manifest, signer.privateKey) };
  };
  const refusal = async (artifact: { dir: string; manifest: Manifest }) => {
    const response = await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
    assert.equal(response.status, 400);
    return ((await response.json()) as { error: { message: string } }).error.message;
  };

  assert.match(await refusal(await resigned(51, Buffer.from('this is not onnx'))), /^manifest\.files\.model\.onnx: model\.onnx does not load in onnxruntime \(.*protobuf parsing failed.*\): every device would refuse it$/);
  assert.equal(await refusal(await resigned(52, Buffer.alloc(0))), 'manifest.files.model.onnx: model.onnx is empty: every device would refuse it');
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
  // The artifact as written is registered.
  const good = await makeArtifact(t, { seed: 54, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(server, 'iris', good.dir, good.manifest)).status, 201);
});

test("a model.onnx that devices would run but that is not the model its manifest's architecture describes (another network's) is refused, naming both; nothing is registered", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  // What a pruning pipeline that wrote the general model's file beside the pruned manifest would sign.
  const pruned = await makeArtifact(t, { seed: 61, privateKey: signer.privateKey, units: 4 });
  const general = await makeArtifact(t, { seed: 62, privateKey: signer.privateKey, units: 32 });
  const onnx = await readFile(join(general.dir, 'model.onnx'));
  await writeFile(join(pruned.dir, 'model.onnx'), onnx);
  const manifest = signManifest(
    { ...pruned.manifest, files: { ...pruned.manifest.files, 'model.onnx': { sha256: createHash('sha256').update(onnx).digest('hex'), bytes: onnx.length } } },
    signer.privateKey,
  );
  const response = await pushArtifact(server, 'iris', pruned.dir, manifest);
  assert.equal(response.status, 400);
  assert.equal(
    ((await response.json()) as { error: { message: string } }).error.message,
    "manifest.architecture: model.onnx holds the layers 32-3 on 7 inputs (355 parameters, 675 FLOPs/sample), but the manifest's architecture says 4-3 on 7 inputs (47 parameters, 87 FLOPs/sample): the registry would show another model's size",
  );
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
  // Each as written is registered.
  assert.equal((await pushArtifact(server, 'iris', general.dir, general.manifest)).status, 201);
});

test('a model.onnx that holds weights beyond the layers its manifest lists (a matrix hidden beside them) is refused, naming how many; nothing is registered', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 63, privateKey: signer.privateKey, units: 4 });
  const model = onnx.ModelProto.decode(await readFile(join(artifact.dir, 'model.onnx')));
  // Devices run it as they run the listed layers (onnxruntime drops an initializer no node uses);
  // one a node used would make every run as large, and its file as large, as 7,000 more weights.
  model.graph!.initializer!.push(onnx.TensorProto.create({ name: 'hidden/weights', dims: [7, 1000], dataType: onnx.TensorProto.DataType.FLOAT, rawData: Buffer.alloc(7000 * 4) }));
  const bytes = Buffer.from(onnx.ModelProto.encode(model).finish());
  await writeFile(join(artifact.dir, 'model.onnx'), bytes);
  const manifest = signManifest(
    { ...artifact.manifest, files: { ...artifact.manifest.files, 'model.onnx': { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length } } },
    signer.privateKey,
  );
  const response = await pushArtifact(server, 'iris', artifact.dir, manifest);
  assert.equal(response.status, 400);
  assert.equal(
    ((await response.json()) as { error: { message: string } }).error.message,
    'manifest.architecture: model.onnx holds 7000 values beyond the layers 4-3 on 7 inputs (47 parameters, 87 FLOPs/sample) and their standardization (a model exportOnnx did not write): the registry would show a smaller model than devices run',
  );
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
});
