import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { onnxArchitecture } from '../../shared/artifact/onnx-architecture.ts';
import { exportOnnx, MAX_FOLDED_MEAN_RATIO, ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-export.ts';
import { forward, type DenseNetwork } from '../../shared/model/dense-network.ts';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';
import { toDenseNetwork, toTfjsModel } from '../../shared/model/tfjs-convert.ts';
import { randomNetwork, rawRows } from './fixtures.ts';

const TOLERANCE = 1e-4;

before(async () => {
  await initTfjs();
});

async function runOnnx(bytes: Uint8Array, rows: number[][]): Promise<number[][]> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const width = rows[0]!.length;
    const input = new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, width]);
    const output = (await session.run({ [ONNX_INPUT]: input }))[ONNX_OUTPUT]!;
    const units = output.dims[1]!;
    assert.deepEqual(output.dims, [rows.length, units]);
    const data = output.data as Float32Array;
    return rows.map((_, r) => Array.from(data.subarray(r * units, (r + 1) * units)));
  } finally {
    await session.release();
  }
}

/** tfjs prediction on standardized rows, de-standardized for regression. */
function predictTfjs(model: tf.LayersModel, network: DenseNetwork, rows: number[][]): number[][] {
  return tf.tidy(() => {
    const standardized = tf.tensor2d(rows).sub(tf.tensor1d(network.inputMean)).div(tf.tensor1d(network.inputScale));
    let output = model.predict(standardized) as tf.Tensor;
    if (network.target) output = output.mul(network.target.scale).add(network.target.mean);
    return output.arraySync() as number[][];
  });
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  assert.equal(a.length, b.length);
  let max = 0;
  a.forEach((row, r) => {
    assert.equal(row.length, b[r]!.length);
    row.forEach((value, c) => {
      max = Math.max(max, Math.abs(value - b[r]![c]!));
    });
  });
  return max;
}

function opTypes(bytes: Uint8Array): string[] {
  return onnxProto.onnx.ModelProto.decode(bytes).graph!.node!.map((node) => node.opType!);
}

/** Features whose means are small against their scales (|mean| / scale ≤ 3), as standardized pixels are. */
function centredNetwork(): DenseNetwork {
  const network = randomNetwork(5, 7, [
    { units: 32, activation: 'relu' },
    { units: 3, activation: 'softmax' },
  ]);
  return { ...network, inputMean: network.inputScale.map((scale, i) => scale * ((i % 7) - 3)) };
}

const CASES = [
  {
    name: 'classifier with small feature means (standardization folded entirely into the first layer)',
    network: centredNetwork,
  },
  {
    name: 'classifier 7 → 32 relu → 16 relu → 3 softmax',
    network: () =>
      randomNetwork(1, 7, [
        { units: 32, activation: 'relu' },
        { units: 16, activation: 'relu' },
        { units: 3, activation: 'softmax' },
      ]),
  },
  {
    name: 'regressor 7 → 32 relu → 16 relu → 1 linear with target scaling',
    network: () =>
      randomNetwork(
        2,
        7,
        [
          { units: 32, activation: 'relu' },
          { units: 16, activation: 'relu' },
          { units: 1, activation: 'linear' },
        ],
        { mean: 152.3, scale: 18.7 },
      ),
  },
];

for (const { name, network: build } of CASES) {
  test(`ONNX on raw features matches tfjs and the reference forward pass: ${name}`, async () => {
    const original = build();
    const model = toTfjsModel(original);
    try {
      // Export what tfjs holds, as the pruning engine does.
      const network = toDenseNetwork(model, original);
      const rows = rawRows(3, network, 200);
      const onnx = await runOnnx(exportOnnx(network), rows);
      const viaTfjs = predictTfjs(model, network, rows);
      const reference = forward(network, rows);

      assert.ok(maxAbsDiff(onnx, viaTfjs) <= TOLERANCE, `ONNX vs tfjs: max abs diff ${maxAbsDiff(onnx, viaTfjs)}`);
      assert.ok(maxAbsDiff(onnx, reference) <= TOLERANCE, `ONNX vs forward(): max abs diff ${maxAbsDiff(onnx, reference)}`);
      // The outputs vary across rows, so agreement is not an accident of a constant output.
      assert.ok(maxAbsDiff(onnx.slice(0, 100), onnx.slice(100)) > 1e-2);
    } finally {
      model.dispose();
    }
  });
}

test('the standardization is folded into the first layer: no Div, and a Sub only for means too large to fold', () => {
  const folded = opTypes(exportOnnx(centredNetwork()));
  assert.deepEqual(folded, ['MatMul', 'Add', 'Relu', 'MatMul', 'Add', 'Softmax']);
  // The fixture's means reach 400 × their scales: past MAX_FOLDED_MEAN_RATIO, so the input is centred first.
  const network = CASES[1]!.network();
  assert.ok(network.inputMean.some((mean, i) => Math.abs(mean) / network.inputScale[i]! > MAX_FOLDED_MEAN_RATIO));
  assert.deepEqual(opTypes(exportOnnx(network)).slice(0, 3), ['Sub', 'MatMul', 'Add']);
  assert.ok(!opTypes(exportOnnx(network)).includes('Div'));
});

test('the ONNX model has a symbolic batch dimension and runs with batch 1 and batch 64', async () => {
  const network = CASES[1]!.network();
  const bytes = exportOnnx(network);
  const rows = rawRows(4, network, 64);
  const session = await ort.InferenceSession.create(bytes);
  try {
    assert.deepEqual(session.inputNames, [ONNX_INPUT]);
    assert.deepEqual(session.outputNames, [ONNX_OUTPUT]);
    const [input] = session.inputMetadata;
    assert.ok(input?.isTensor);
    assert.deepEqual(input.shape, ['batch', 7]);
    assert.equal(input.type, 'float32');
  } finally {
    await session.release();
  }
  const single = await runOnnx(bytes, rows.slice(0, 1));
  const batch = await runOnnx(bytes, rows);
  assert.equal(single.length, 1);
  assert.equal(batch.length, 64);
  assert.ok(maxAbsDiff(single, batch.slice(0, 1)) <= 1e-6);
  assert.ok(maxAbsDiff(batch, forward(network, rows)) <= TOLERANCE);
});

test('onnxArchitecture reads the layers exportOnnx wrote, and counts no values beyond them and the standardization, for a classifier and a regressor with its input centred', () => {
  const classifier = randomNetwork(71, 7, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
  // Means far beyond the scale: the graph keeps an explicit Sub of input_mean; a target scale and mean for regression.
  const regressor = randomNetwork(72, 5, [{ units: 6, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 150, scale: 40 });
  regressor.inputMean.fill(5000);
  regressor.inputScale.fill(1);
  assert.deepEqual(onnxArchitecture(exportOnnx(classifier)), { inputs: 7, layers: [8, 3], params: 7 * 8 + 8 + 8 * 3 + 3, flopsPerSample: 2 * (7 * 8 + 8 * 3) + 8 + 3, unlistedValues: 0 });
  const graph = onnxProto.onnx.ModelProto.decode(exportOnnx(regressor)).graph!;
  assert.ok(graph.initializer!.some((tensor) => tensor.name === 'input_mean'), 'the input is centred by a Sub here');
  assert.deepEqual(onnxArchitecture(exportOnnx(regressor)), { inputs: 5, layers: [6, 1], params: 5 * 6 + 6 + 6 + 1, flopsPerSample: 2 * (5 * 6 + 6) + 6 + 1, unlistedValues: 0 });
});
