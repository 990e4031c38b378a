import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import onnxProto from 'onnx-proto';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-io.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { MODEL_CHECK_TIMEOUT_MS } from '../../server/artifacts/model-file-check.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { startTestServer, type TestServer } from './helpers/test-server.ts';

const { onnx } = onnxProto;
const F = onnx.TensorProto.DataType.FLOAT;
const I64 = onnx.TensorProto.DataType.INT64;
const BOOL = onnx.TensorProto.DataType.BOOL;

/**
 * A signed artifact (a CI key stolen, an exporter gone wrong) whose model.onnx is not the dense
 * network it claims. The registration runs it before any device does: it ran on the server's own
 * thread, and a model that loops for ever froze the HTTP and gRPC APIs and the broker (only kill -9
 * stopped the server); a classifier giving no probabilities was registered and served as one.
 */

/** `artifact`'s model.onnx, its output passed through `extend` (given the dense network's output), re-signed. */
async function rewired(artifact: { dir: string; manifest: Manifest }, privateKey: Parameters<typeof signManifest>[1], extend: (graph: any, dense: string) => void) {
  const model = onnx.ModelProto.decode(await readFile(join(artifact.dir, 'model.onnx')));
  const graph = model.graph as any;
  graph.node.at(-1).output = ['dense_output'];
  extend(graph, 'dense_output');
  const bytes = onnx.ModelProto.encode(model).finish();
  await writeFile(join(artifact.dir, 'model.onnx'), bytes);
  const manifest = signManifest({ ...artifact.manifest, files: { ...artifact.manifest.files, 'model.onnx': { sha256: sha256Hex(bytes), bytes: bytes.length } } }, privateKey);
  return { dir: artifact.dir, manifest };
}

async function refusal(server: TestServer, artifact: { dir: string; manifest: Manifest }): Promise<string> {
  const response = await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  assert.equal(response.status, 400);
  return ((await response.json()) as { error: { message: string } }).error.message;
}

test('a model that runs on and on when given more than one row is refused within the check\'s time, the server answering meanwhile; nothing is registered', { timeout: MODEL_CHECK_TIMEOUT_MS + 60_000 }, async (t: TestContext) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  // A loop of (rows − 1) × 10^9 turns: nothing on the one-row probe, for ever on a device's batch.
  const looping = await rewired(await makeArtifact(t, { seed: 71, privateKey: signer.privateKey }), signer.privateKey, (graph, dense) => {
    graph.initializer.push(
      { name: 'one', dims: [1], dataType: I64, int64Data: [1] },
      { name: 'big', dims: [1], dataType: I64, int64Data: [1_000_000_000] },
      { name: 'start', dims: [1], dataType: I64, int64Data: [0] },
      { name: 'cond', dims: [], dataType: BOOL, int32Data: [1] },
      { name: 'acc0', dims: [], dataType: F, floatData: [0] },
      { name: 'zero', dims: [], dataType: F, floatData: [0] },
    );
    const scalar = (name: string, elemType: number) => ({ name, type: { tensorType: { elemType, shape: { dim: [] } } } });
    const body = {
      name: 'body',
      node: [{ name: 'keep', opType: 'Identity', input: ['cin'], output: ['cout'] }, { name: 'carry', opType: 'Identity', input: ['ain'], output: ['aout'] }],
      input: [scalar('i', I64), scalar('cin', BOOL), scalar('ain', F)],
      output: [scalar('cout', BOOL), scalar('aout', F)],
    };
    graph.node.push(
      { name: 'shape', opType: 'Shape', input: [ONNX_INPUT], output: ['shape'] },
      { name: 'rows', opType: 'Slice', input: ['shape', 'start', 'one'], output: ['rows'] },
      { name: 'less', opType: 'Sub', input: ['rows', 'one'], output: ['less'] },
      { name: 'turns', opType: 'Mul', input: ['less', 'big'], output: ['turns1'] },
      { name: 'squeeze', opType: 'Squeeze', input: ['turns1'], output: ['turns'] },
      { name: 'loop', opType: 'Loop', input: ['turns', 'cond', 'acc0'], output: ['acc'], attribute: [{ name: 'body', type: onnx.AttributeProto.AttributeType.GRAPH, g: body }] },
      { name: 'nothing', opType: 'Mul', input: ['acc', 'zero'], output: ['nothing'] },
      { name: 'out', opType: 'Add', input: [dense, 'nothing'], output: [ONNX_OUTPUT] },
    );
  });
  const started = Date.now();
  const pushing = refusal(server, looping);
  // The server answers while the model runs in its check.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const health = await fetch(`${server.baseUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(health.status, 200);
  assert.equal(await pushing, `manifest.files.model.onnx: model.onnx did not finish loading and running on one row and on 64 rows within ${MODEL_CHECK_TIMEOUT_MS / 1000} s: a device's benchmark and inference would not finish either: every device would refuse it`);
  assert.ok(Date.now() - started < MODEL_CHECK_TIMEOUT_MS + 5_000, 'refused once its time was up');
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
  // The next check gets a worker of its own: a sound artifact is registered.
  const good = await makeArtifact(t, { seed: 72, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(server, 'iris', good.dir, good.manifest)).status, 201);
});

test('a classifier whose outputs are no probabilities is refused, naming what it gave; nothing is registered', async (t: TestContext) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const constant = await rewired(await makeArtifact(t, { seed: 73, privateKey: signer.privateKey }), signer.privateKey, (graph, dense) => {
    graph.initializer.push({ name: 'scores', dims: [1, 3], dataType: F, floatData: [-7, 0.3, 5] }, { name: 'zero', dims: [], dataType: F, floatData: [0] });
    graph.node.push({ name: 'drop', opType: 'Mul', input: [dense, 'zero'], output: ['dropped'] }, { name: 'out', opType: 'Add', input: ['dropped', 'scores'], output: [ONNX_OUTPUT] });
  });
  assert.equal(
    await refusal(server, constant),
    "manifest.files.model.onnx: model.onnx gives [-7, 0.3, 5] for a row of zeros, which are no probabilities (each in [0, 1], summing to 1): the manifest's classifier is served as one, and devices would report these as its class probabilities: every device would refuse it",
  );
  assert.deepEqual(await server.server.ctx.store.models.listModels(), [], 'nothing registered');
});
