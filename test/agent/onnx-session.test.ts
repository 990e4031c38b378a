import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createRequire } from 'node:module';
import { AGENT_SESSION_OPTIONS, createOnnxSession, INLINE_TESTED_VERSIONS, ONNX_RUN_PATH, type OnnxRunPath } from '../../agent/onnx-session.ts';
import { packRows, runModel } from '../../agent/onnx-runner.ts';
import { exportOnnx, ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-export.ts';
import { randomNetwork, rawRows } from '../artifact/fixtures.ts';

const classifier = randomNetwork(11, 7, [{ units: 12, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
const regressor = randomNetwork(12, 5, [{ units: 9, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 140, scale: 60 });

test('the installed onnxruntime-node runs sessions inline (the version it was tested with, its native binding usable)', () => {
  // An upgrade of onnxruntime-node falls back to the public API; this test names that, so the
  // cost per call is not lost unnoticed. Check dist/binding.js of the new version, then widen
  // INLINE_TESTED_VERSIONS.
  const { version } = createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string };
  assert.match(version, INLINE_TESTED_VERSIONS, `onnxruntime-node ${version} is not a version the inline path was tested with: sessions fall back to the public run()`);
  assert.equal(ONNX_RUN_PATH, 'inline', 'onnxruntime-node/dist/binding.js is missing or changed: sessions fall back to the public run()');
});

test('a model given as a view into a larger buffer loads from its own bytes (offset and length passed through)', async () => {
  const bytes = exportOnnx(classifier);
  const padded = new Uint8Array(bytes.length + 24).fill(0xff);
  padded.set(bytes, 8);
  const session = await createOnnxSession(padded.subarray(8, 8 + bytes.length));
  try {
    const features = packRows(rawRows(5, classifier, 3), 7);
    const reference = await ort.InferenceSession.create(bytes, AGENT_SESSION_OPTIONS);
    assert.deepEqual(await runModel(session, features, 3, 7), await runModel(reference, features, 3, 7));
    await reference.release();
  } finally {
    await session.release();
  }
});

for (const [name, network, path] of [
  ['classifier', classifier, 'inline'],
  ['regressor', regressor, 'inline'],
  ['classifier', classifier, 'public'],
] as [string, typeof classifier, OnnxRunPath][]) {
  test(`a session on the ${path} path gives the package's own outputs and metadata exactly (${name})`, async () => {
    const bytes = exportOnnx(network);
    const inline = await createOnnxSession(bytes, undefined, path);
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

for (const path of ['inline', 'public'] as const) {
  test(`bad input to a session on the ${path} path is a rejected promise, not a crash`, async () => {
    const session = await createOnnxSession(exportOnnx(classifier), undefined, path);
    try {
      const narrow = new ort.Tensor('float32', new Float32Array(6), [1, 6]);
      await assert.rejects(session.run({ [ONNX_INPUT]: narrow }), /dimension|Got: 6/i);
      await assert.rejects(session.run({ other: narrow }), /input 'features' is missing/);
    } finally {
      await session.release();
    }
    await assert.rejects(createOnnxSession(Uint8Array.of(1, 2, 3), undefined, path), (error: unknown) => error instanceof Error && error.message.length > 0);
  });
}

test('an inline session refuses to run once released, and releasing twice is harmless', async () => {
  const session = await createOnnxSession(exportOnnx(classifier));
  await runModel(session, new Float32Array(7), 1, 7);
  await session.release();
  await session.release();
  await assert.rejects(runModel(session, new Float32Array(7), 1, 7), /released/);
});
