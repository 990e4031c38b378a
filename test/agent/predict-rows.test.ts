import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePredictRows } from '../../agent/predict-rows.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';

const pixels = Array.from({ length: 784 }, (_, i) => `pixel${i}`);
const manifest = { task: 'classification', features: pixels, labels: ['0', '1'] } as unknown as Manifest;
const error = (body: unknown) => {
  const result = parsePredictRows(body, manifest);
  assert.ok('error' in result, 'a 400');
  return result.error;
};

test('a bad row for a wide model (784 pixels) is a short one-line 400: the feature list and a hostile key are clipped', () => {
  const short = error({ rows: [[1, 2, 3]] });
  assert.equal(short, 'rows[0]: expected 784 values (' + pixels.slice(0, 20).join(', ') + ', … 764 more), got 3');
  const named = Object.fromEntries(pixels.map((name) => [name, 0]));
  const unknown = error({ rows: [{ ...named, ['x'.repeat(500_000)]: 1 }] });
  assert.match(unknown, /^rows\[0\]: unknown feature "x{100}" \(the model takes pixel0, pixel1, .*, … 764 more\)$/);
  assert.ok(unknown.length < 400, `${unknown.length} characters`);
  // Valid named rows are still read in the model's order.
  const parsed = parsePredictRows({ rows: [{ ...named, pixel783: 2, pixel0: 1 }] }, manifest);
  assert.ok('features' in parsed);
  assert.deepEqual([parsed.features[0], parsed.features[783], parsed.rows], [1, 2, 1]);
});

test('named rows match a feature whatever spaces are around its name, in the row or in the model', () => {
  const spaced = { task: 'classification', features: [' d ', 'e'], labels: ['0', '1'] } as unknown as Manifest;
  for (const [model, row] of [
    [spaced, { d: 1, e: 2 }],
    [{ ...spaced, features: ['d', 'e'] }, { ' d ': 1, e: 2 }],
  ] as const) {
    const parsed = parsePredictRows({ rows: [row] }, model as Manifest);
    assert.ok('features' in parsed, JSON.stringify(parsed));
    assert.deepEqual([...parsed.features], [1, 2]);
  }
});
