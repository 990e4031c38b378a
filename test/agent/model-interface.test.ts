import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { modelInterfaceProblem } from '../../agent/model-interface.ts';
import { runModel } from '../../agent/onnx-runner.ts';
import { createOnnxSession } from '../../agent/onnx-session.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { exportOnnx, ONNX_OUTPUT } from '../../shared/artifact/onnx-export.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../artifact/fixtures.ts';
import { createAgentWorld, isOutcome, signedVariant, type AgentWorld, type TestArtifact } from './agent-fixtures.ts';
import { startAgent } from './agent-harness.ts';

const { onnx } = onnxProto;
const DataType = onnx.TensorProto.DataType;

/**
 * Models another exporter (or a trusted signer's own tooling) may write: the network fleetprune
 * exports, then changed the way real exports differ — an output cast to float16 or int64, a batch
 * fixed at 1 (torch.onnx.export without dynamic axes), an extra input, one value per row.
 */
const network = randomNetwork(11, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
const manifest = { task: 'classification', features: CLASSIFIER_FEATURES, labels: ['a', 'b', 'c'] } as unknown as Manifest;

function edited(change: (graph: OnnxTypes.IGraphProto) => void): Uint8Array {
  const model = onnx.ModelProto.decode(exportOnnx(network));
  change(model.graph!);
  return onnx.ModelProto.encode(model).finish();
}

/** The graph's last node writes `output` through a node of `opType` appended to it. */
function appendToOutput(graph: OnnxTypes.IGraphProto, opType: string, attribute: OnnxTypes.IAttributeProto[]): void {
  const last = graph.node!.at(-1)!;
  last.output = ['before_output'];
  graph.node!.push({ name: opType, opType, input: ['before_output'], output: [ONNX_OUTPUT], attribute });
}

const castOutput = (to: number) =>
  edited((graph) => {
    appendToOutput(graph, 'Cast', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: to }]);
    graph.output![0]!.type!.tensorType!.elemType = to;
  });

const fixedBatch = edited((graph) => {
  for (const value of [graph.input![0]!, graph.output![0]!]) value.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
});

const extraInput = edited((graph) => {
  graph.input!.push({ name: 'mask', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 3 }] } } } });
  appendToOutput(graph, 'Mul', []);
  graph.node!.at(-1)!.input = ['before_output', 'mask'];
});

const oneValuePerRow = edited((graph) => {
  appendToOutput(graph, 'ReduceMax', [
    { name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [1] },
    { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 },
  ]);
  graph.output![0]!.type!.tensorType!.shape = { dim: [{ dimParam: 'batch' }] };
});

async function problemOf(bytes: Uint8Array): Promise<string | null> {
  const session = await createOnnxSession(bytes);
  try {
    return modelInterfaceProblem(session, manifest);
  } finally {
    await session.release();
  }
}

test('a model.onnx the agent would misread or could not feed is refused by the interface check, not served', async () => {
  assert.equal(await problemOf(exportOnnx(network)), null, 'what fleetprune exports runs');
  const regressor = randomNetwork(12, CLASSIFIER_FEATURES.length, [{ units: 4, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 50, scale: 10 });
  const session = await createOnnxSession(exportOnnx(regressor));
  assert.equal(modelInterfaceProblem(session, { ...manifest, task: 'regression', labels: [] }), null);
  await session.release();

  assert.equal(await problemOf(castOutput(DataType.DOUBLE)), null, 'float64 outputs are read as the numbers they are');
  assert.equal(await problemOf(castOutput(DataType.FLOAT16)), 'model.onnx output "output" is not a float32 or float64 tensor');
  assert.equal(await problemOf(castOutput(DataType.INT64)), 'model.onnx output "output" is not a float32 or float64 tensor');
  assert.equal(await problemOf(fixedBatch), 'model.onnx takes "features" in batches of exactly 1 rows, but the agent feeds any number of rows');
  assert.equal(await problemOf(extraInput), 'model.onnx takes inputs other than "features" (mask), which the agent cannot feed');
  assert.equal(await problemOf(oneValuePerRow), 'model.onnx gives "output" of shape [batch], but the agent reads one row of values per input row');
});

test('runModel refuses an output it would read as other numbers (float16 bits as probabilities)', async () => {
  const session = await createOnnxSession(castOutput(DataType.FLOAT16));
  try {
    await assert.rejects(runModel(session, new Float32Array(14).fill(1), 2, 7), /the model gave "output" as float16 \[2, 3\] for 2 rows, not float32 or float64 \[2, k\]/);
  } finally {
    await session.release();
  }
});

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/** v1 with its model.onnx replaced by `bytes`, signed with the server's key and served. */
const signedWith = (name: string, bytes: Uint8Array): Promise<TestArtifact> => signedVariant(world, name, bytes);

test('a signed model with a float16 output or a fixed batch is refused as active: the device keeps serving its model, with real answers', async (t) => {
  const { agent, predict } = await startAgent(t, world, 'reexported-1');
  const first = await world.assign('reexported-1', world.v1, 'active');
  await world.waitForReport(isOutcome(first.id, 'activated'));
  const before = await predict({ rows: [[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]] });
  assert.equal(before.status, 200);

  for (const [name, bytes, reason] of [
    ['fp16', castOutput(DataType.FLOAT16), /^the model cannot run: model\.onnx output "output" is not a float32 or float64 tensor$/],
    ['batch1', fixedBatch, /^the model cannot run: model\.onnx takes "features" in batches of exactly 1 rows/],
  ] as const) {
    const assignment = await world.assign('reexported-1', await signedWith(name, bytes), 'active');
    const report = await world.waitForReport(isOutcome(assignment.id, 'refused'));
    assert.match(report.kind === 'assignment' ? (report.reason ?? '') : '', reason, name);
  }
  await agent.idle();
  assert.equal(agent.slots.active?.sha256, world.v1.id);
  const after = await predict({ rows: [[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]] });
  assert.deepEqual([after.status, after.json.sha256, after.json.predictions], [200, world.v1.id, before.json.predictions]);
  for (const prediction of after.json.predictions) assert.ok(prediction.probabilities.every((p: number) => p >= 0 && p <= 1));
});
