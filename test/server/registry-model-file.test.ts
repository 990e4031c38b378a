import assert from 'node:assert/strict';
import { createHash, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import onnxProto from 'onnx-proto';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { startTestServer } from './helpers/test-server.ts';

const { onnx } = onnxProto;
type GraphProto = NonNullable<ReturnType<typeof onnx.ModelProto.decode>['graph']>;

/** The artifact with `onnx` as its model.onnx, its manifest listing it and signed again (a signed manifest can list any bytes). */
async function withModelOnnx(artifact: { dir: string; manifest: Manifest }, onnx: Uint8Array, privateKey: KeyObject): Promise<{ dir: string; manifest: Manifest }> {
  await writeFile(join(artifact.dir, 'model.onnx'), onnx);
  const files = { ...artifact.manifest.files, 'model.onnx': { sha256: createHash('sha256').update(onnx).digest('hex'), bytes: onnx.length } };
  return { dir: artifact.dir, manifest: signManifest({ ...artifact.manifest, files }, privateKey) };
}

/** A signed manifest can list any bytes as model.onnx: the registry refuses one every device would refuse at install. */

test('a model.onnx that is not ONNX or is empty is refused at registration; nothing is registered', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const resigned = async (seed: number, onnx: Buffer) => withModelOnnx(await makeArtifact(t, { seed, privateKey: signer.privateKey }), onnx, signer.privateKey);
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
  const { manifest } = await withModelOnnx(pruned, await readFile(join(general.dir, 'model.onnx')), signer.privateKey);
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

// Nothing checked the tfjs model: another network's, listed and signed, was registered, and
// loadTfjsNetwork read a 32-unit network back for a version the registry lists as 4-3.
test("a tfjs model of another network than the manifest's architecture is refused at registration, naming both; nothing is registered", async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const pruned = await makeArtifact(t, { seed: 63, privateKey: signer.privateKey, units: 4 });
  const general = await makeArtifact(t, { seed: 64, privateKey: signer.privateKey, units: 32 });
  const files = { ...pruned.manifest.files };
  for (const file of ['tfjs/model.json', 'tfjs/weights.bin']) {
    const bytes = await readFile(join(general.dir, file));
    await writeFile(join(pruned.dir, file), bytes);
    files[file] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
  }
  const manifest = signManifest({ ...pruned.manifest, files }, signer.privateKey);
  const response = await pushArtifact(server, 'iris', pruned.dir, manifest);
  assert.equal(response.status, 400);
  assert.equal(
    ((await response.json()) as { error: { message: string } }).error.message,
    "manifest.architecture: tfjs/model.json holds the layers 32-3 on 7 inputs (355 values), but the manifest's architecture says 4-3 on 7 inputs (47 parameters, 87 FLOPs/sample): the tfjs model is another network than the version's",
  );
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
  assert.equal((await pushArtifact(server, 'iris', pruned.dir, pruned.manifest)).status, 400, 'the files on disk are the other network now');
});

test('a model.onnx that holds weights beyond the layers its manifest lists (hidden beside them, in a Constant, in another layout) is refused, naming how many; the same layers in another layout are registered', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const shown = '4-3 on 7 inputs (47 parameters, 87 FLOPs/sample)';
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const hidden = () => onnx.TensorProto.create({ name: 'hidden/weights', dims: [7, 1000], dataType: FLOAT, rawData: Buffer.alloc(7000 * 4) });
  /** The first layer's kernel under another name: not the layout exportOnnx writes. */
  const renameKernel = (graph: GraphProto) => {
    graph.initializer!.find((tensor) => tensor.name === 'dense_0/kernel')!.name = 'w0';
    for (const node of graph.node!) node.input = node.input!.map((name) => (name === 'dense_0/kernel' ? 'w0' : name));
  };
  // Devices run each as they run the listed layers (onnxruntime drops an initializer or a Constant
  // no node uses); one a node used would make every run as large, and its file, as 7,000 more weights.
  const cases: [string, (graph: GraphProto) => void, string | null][] = [
    ['an initializer beside the layers', (graph) => graph.initializer!.push(hidden()), `model.onnx holds 7000 values beyond the layers ${shown} and their standardization (a model exportOnnx did not write)`],
    [
      "a Constant node's value_floats",
      (graph) => graph.node!.push(onnx.NodeProto.create({ opType: 'Constant', output: ['hidden'], attribute: [onnx.AttributeProto.create({ name: 'value_floats', type: onnx.AttributeProto.AttributeType.FLOATS, floats: new Array(7000).fill(0) })] })),
      `model.onnx holds 7000 values beyond the layers ${shown} and their standardization (a model exportOnnx did not write)`,
    ],
    ['the same layers, renamed', renameKernel, null],
    // Counted whole: the layers' 47, the 7,000 beside them, and the input's mean (7: its Sub is kept, see exportOnnx).
    ['renamed layers and an initializer beside them', (graph) => (renameKernel(graph), graph.initializer!.push(hidden())), `model.onnx holds ${7000 + 47 + 7} values, more than the layers ${shown} its manifest's architecture lists and their standardization`],
  ];
  for (const [index, [what, change, refusal]] of cases.entries()) {
    const artifact = await makeArtifact(t, { seed: 63 + index, privateKey: signer.privateKey, units: 4 });
    const model = onnx.ModelProto.decode(await readFile(join(artifact.dir, 'model.onnx')));
    change(model.graph!);
    const { manifest } = await withModelOnnx(artifact, onnx.ModelProto.encode(model).finish(), signer.privateKey);
    const response = await pushArtifact(server, 'iris', artifact.dir, manifest);
    const body = (await response.json()) as { error?: { message: string } };
    if (refusal === null) assert.equal(response.status, 201, `${what}: ${JSON.stringify(body)}`);
    else assert.deepEqual([response.status, body.error?.message], [400, `manifest.architecture: ${refusal}: the registry would show a smaller model than devices run`], what);
  }
  assert.equal((await server.server.ctx.store.models.listVersions('iris')).length, 1, 'only the renamed layers registered');
});
