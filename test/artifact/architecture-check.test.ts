import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tfjsArchitectureProblem } from '../../shared/artifact/architecture-check.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';

const manifest = { architecture: { inputs: 7, layers: [8, 3], params: 91, flopsPerSample: 171, activations: ['relu', 'softmax'] } } as Manifest;
const weights = (shapes: number[][]) => JSON.stringify({ weightsManifest: [{ paths: ['weights.bin'], weights: shapes.map((shape, i) => ({ name: `w${i}`, shape, dtype: 'float32' })) }] });

// A model.json of `null` threw a TypeError: a 500 at registration, a crash of verify.
test("the tfjs architecture check names what is wrong with any model.json, and passes the manifest's own network", () => {
  assert.equal(tfjsArchitectureProblem(weights([[7, 8], [8], [8, 3], [3]]), manifest), null);
  for (const text of ['null', '[]', '42', '"text"']) assert.equal(tfjsArchitectureProblem(text, manifest), 'tfjs/model.json: not a tfjs model.json (its JSON is not an object)', text);
  assert.match(tfjsArchitectureProblem('{', manifest)!, /^tfjs\/model\.json: not valid JSON \(/);
  assert.equal(tfjsArchitectureProblem('{}', manifest), 'tfjs/model.json: no weightsManifest list');
  assert.equal(tfjsArchitectureProblem('{"weightsManifest":[null]}', manifest), 'tfjs/model.json: a weightsManifest entry without a weights list');
  assert.equal(tfjsArchitectureProblem('{"weightsManifest":[{"weights":[{"shape":[1.5]}]}]}', manifest), 'tfjs/model.json: a weight without a shape of whole numbers');
  assert.match(tfjsArchitectureProblem(weights([[7, 8], [8], [5, 3], [3]]), manifest)!, /^tfjs\/model\.json holds 2 kernels that do not chain into dense layers \(82 values\), but the manifest's architecture says 8-3 on 7 inputs/);
  // The same layers with a weight more (a hidden one): not the network the manifest counts.
  assert.match(tfjsArchitectureProblem(weights([[7, 8], [8], [8, 3], [3], [1000]]), manifest)!, /^tfjs\/model\.json holds the layers 8-3 on 7 inputs \(1091 values\)/);
});
