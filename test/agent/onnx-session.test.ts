import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { AGENT_SESSION_OPTIONS, createOnnxSession, ONNX_RUN_PATH } from '../../agent/onnx-session.ts';
import { packRows, runModel } from '../../agent/onnx-runner.ts';
import { exportOnnx, ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-export.ts';
import { randomNetwork, rawRows } from '../artifact/fixtures.ts';

const classifier = randomNetwork(11, 7, [{ units: 12, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
const regressor = randomNetwork(12, 5, [{ units: 9, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 140, scale: 60 });

test('the installed onnxruntime-node runs sessions inline (its native binding is usable)', () => {
  // A package upgrade that moves or changes dist/binding.js falls back to the public API; this
  // test names that, so the 4–8 µs per call it costs is not lost unnoticed.
  assert.equal(ONNX_RUN_PATH, 'inline', 'onnxruntime-node/dist/binding.js is missing or changed: sessions fall back to the public run()');
});

for (const [name, network] of [['classifier', classifier], ['regressor', regressor]] as const) {
  test(`an inline session gives the public session's outputs and metadata exactly (${name})`, async () => {
    const bytes = exportOnnx(network);
    const inline = await createOnnxSession(bytes);
    const reference = await ort.InferenceSession.create(bytes, AGENT_SESSION_OPTIONS);
    try {
      assert.deepEqual(inline.inputNames, reference.inputNames);
      assert.deepEqual(inline.outputNames, reference.outputNames);
      assert.deepEqual(inline.inputMetadata, reference.inputMetadata);
      assert.deepEqual(inline.outputMetadata, reference.outputMetadata);
      const width = network.inputMean.length;
      for (const batch of [1, 64]) {
        const features = packRows(rawRows(batch, network, batch), width);
        const tensor = new ort.Tensor('float32', features, [batch, width]);
        const expected = (await reference.run({ [ONNX_INPUT]: tensor }))[ONNX_OUTPUT]!;
        const actual = (await inline.run({ [ONNX_INPUT]: tensor }))[ONNX_OUTPUT]!;
        assert.ok(actual instanceof ort.Tensor);
        assert.deepEqual(actual.dims, expected.dims);
        assert.deepEqual(actual.data, expected.data, `batch ${batch}`);
        assert.deepEqual(await runModel(inline, features, batch, width), await runModel(reference, features, batch, width));
      }
    } finally {
      await inline.release();
      await reference.release();
    }
  });
}

test('an inline run settles before any callback queued ahead of it: nothing else lands inside a timed inference', async () => {
  const session = await createOnnxSession(exportOnnx(classifier));
  try {
    const features = packRows(rawRows(1, classifier, 1), 7);
    let immediateRan = false;
    setImmediate(() => (immediateRan = true));
    await runModel(session, features, 1, 7);
    assert.equal(immediateRan, false, 'the run waited for a turn of the event loop');
  } finally {
    await session.release();
  }
});

test('bad input to an inline session is a rejected promise, not a crash; a released session refuses to run', async () => {
  const session = await createOnnxSession(exportOnnx(classifier));
  const narrow = new ort.Tensor('float32', new Float32Array(6), [1, 6]);
  await assert.rejects(session.run({ [ONNX_INPUT]: narrow }), /dimension|Got: 6/i);
  await assert.rejects(session.run({ other: narrow }), /input 'features' is missing/);
  await session.release();
  await session.release();
  await assert.rejects(runModel(session, new Float32Array(7), 1, 7), /released/);
  await assert.rejects(createOnnxSession(Uint8Array.of(1, 2, 3)), (error: unknown) => error instanceof Error && error.message.length > 0);
});
