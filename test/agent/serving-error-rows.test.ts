import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createOnnxSession, type OnnxSession } from '../../agent/onnx-session.ts';
import type { ServingModel } from '../../agent/serving-model.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { ONNX_INPUT, ONNX_OUTPUT } from '../../shared/artifact/onnx-io.ts';
import { exportOnnx } from '../../shared/artifact/onnx-export.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../artifact/fixtures.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { predictApiServer } from './predict-api-server.ts';

const manifest = { name: 'sensor-classifier', task: 'classification', features: CLASSIFIER_FEATURES, labels: ['a', 'b', 'c'] } as unknown as Manifest;
const FAILS = 999;
const NON_FINITE = 777;

/**
 * A real model whose run fails on a batch whose first feature is FAILS and gives NaN on one whose
 * first feature is NON_FINITE, as a model meeting inputs it cannot handle does.
 */
async function faulty(t: TestContext, seed: number, version: string): Promise<ServingModel> {
  const real = await createOnnxSession(exportOnnx(randomNetwork(seed, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }])));
  t.after(() => real.release());
  const session = {
    ...real,
    run: async (feeds: Record<string, ort.Tensor>) => {
      const input = feeds[ONNX_INPUT]!;
      const first = (input.data as Float32Array)[0];
      if (first === FAILS) throw new Error('the model failed');
      if (first === NON_FINITE) return { [ONNX_OUTPUT]: new ort.Tensor('float32', new Float32Array(input.dims[0]! * 3).fill(Number.NaN), [input.dims[0]!, 3]) };
      return real.run(feeds);
    },
  } as unknown as OnnxSession;
  return { ref: { model: manifest.name, version, sha256: `sha-${version}` }, manifest, lease: { session, release: async () => {} } };
}

test('serving errors count rows, as the candidate\'s shadow errors do: a request of 100 rows the active model fails (or answers with a non-finite output) adds 100 errors', async (t) => {
  const active = await faulty(t, 1, '1');
  const candidate = await faulty(t, 2, '2');
  const { stats, url } = await predictApiServer(t, active, candidate);
  const predict = async (first: number) => {
    const rows = Array.from({ length: 100 }, () => [first, 2, 3, 4, 5, 6, 7]);
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows }) });
    await response.text();
    return response.status;
  };
  assert.deepEqual([await predict(1), await predict(1), await predict(FAILS), await predict(NON_FINITE)], [200, 200, 500, 422]);
  // The shadow runs come after the answers (the two served requests only: failed ones are not shadowed).
  await waitFor(() => stats.shadowRows === 200, 5000, 'the two shadow runs');
  assert.deepEqual({ predictions: stats.predictions, errors: stats.errors }, { predictions: 200, errors: 200 }, 'the failed and the non-finite request: 100 rows each');
  // A body the agent refuses is the client's error: no model failed.
  const broken = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip' });
  assert.equal(broken.status, 400, 'an undecodable body is the client\'s error, not counted');
  assert.equal(stats.errors, 200);
});
