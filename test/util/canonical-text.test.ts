import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alignHoldout, Holdout } from '../../agent/holdout.ts';
import { parsePredictRows } from '../../agent/predict-rows.ts';
import { modelNameFromFile } from '../../server/cli/prune-flags.ts';
import { canonicalLabels, deviceLabelsProblem } from '../../server/fleet/device-labels.ts';
import { selectorMatches } from '../../server/rollout/label-selector.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { selectorMatches as commandReaches } from '../../shared/protocol/payloads.ts';
import { sameText } from '../../shared/util/canonical-text.ts';

// "Zürich" as typed (one code point for ü) and as macOS file names and some editors save it (u + U+0308).
const COMPOSED = 'Z\u00fcrich';
const DECOMPOSED = 'Zu\u0308rich';

test('the two spellings of "Zürich" are one text; other texts stay apart', () => {
  assert.notEqual(COMPOSED, DECOMPOSED);
  assert.ok(sameText(COMPOSED, DECOMPOSED));
  assert.ok(!sameText(COMPOSED, 'Zurich'));
});

test('a rollout selector and a fleet command reach a device whose label value is the same text spelled the other way', () => {
  const device = { site: DECOMPOSED, tier: 'edge' };
  assert.ok(selectorMatches({ matchLabels: { site: COMPOSED } }, device));
  assert.ok(selectorMatches({ matchExpressions: [{ key: 'site', operator: 'In', values: ['Bern', COMPOSED] }] }, device));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: 'site', operator: 'NotIn', values: [COMPOSED] }] }, device));
  assert.ok(!selectorMatches({ matchLabels: { site: 'Zurich' } }, device));
  // A label the device does not have matches nothing, whatever object keys it shares a name with.
  assert.ok(!selectorMatches({ matchLabels: { constructor: 'x' } }, device));
  // The agent's own check of a fleet command (a rollback for site=Zürich).
  assert.ok(commandReaches({ labels: { site: COMPOSED } }, 'd1', device));
  assert.ok(!commandReaches({ labels: { site: 'Bern' } }, 'd1', device));
  assert.ok(!commandReaches({ labels: { toString: 'x' } }, 'd1', device));
});

test('device labels are stored composed; a value holding U+FFFD (bytes that were not UTF-8) is refused', () => {
  assert.deepEqual(canonicalLabels({ site: DECOMPOSED, tier: 'edge' }), { site: COMPOSED, tier: 'edge' });
  assert.equal(deviceLabelsProblem({ site: DECOMPOSED }), null);
  assert.equal(
    deviceLabelsProblem({ site: 'Z\uFFFDrich' }),
    'labels.site: holds U+FFFD, the replacement character: the text given was not UTF-8 (a Latin-1 terminal or file?); give it as UTF-8',
  );
});

test("a predict row's feature named in the other spelling is the model's feature", () => {
  const manifest = { task: 'classification', features: ['\u00e9paisseur', 'x'], labels: ['a', 'b'] } as unknown as Manifest;
  const parsed = parsePredictRows({ rows: [{ x: 2, 'e\u0301paisseur': 1 }] }, manifest);
  assert.ok('features' in parsed, JSON.stringify(parsed));
  assert.deepEqual([...parsed.features], [1, 2]);
  // A model whose manifest spells it decomposed takes the composed name too.
  const older = { ...manifest, features: ['e\u0301paisseur', 'x'] } as unknown as Manifest;
  const fromComposed = parsePredictRows({ rows: [{ '\u00e9paisseur': 3, x: 4 }] }, older);
  assert.ok('features' in fromComposed, JSON.stringify(fromComposed));
  assert.deepEqual([...fromComposed.features], [3, 4]);
  // Both spellings in one row: one feature given twice, refused, not the last one read.
  assert.deepEqual(parsePredictRows({ rows: [{ '\u00e9paisseur': 3, 'e\u0301paisseur': 5, x: 4 }] }, manifest), { error: 'rows[0]: feature "\u00e9paisseur" is given twice (spelled two ways)' });
  const unknown = parsePredictRows({ rows: [{ '\u00e9paisseur': 3, x: 4, y: 5 }] }, manifest);
  assert.deepEqual(unknown, { error: 'rows[0]: unknown feature "y" (the model takes \u00e9paisseur, x)' });
});

test('a model name from a file name has one _ per character a reader sees, whichever way the name was saved', () => {
  assert.equal(modelNameFromFile('data/donn\u00e9es.csv'), 'donn_es');
  assert.equal(modelNameFromFile('data/donne\u0301es.csv'), 'donn_es');
  assert.equal(modelNameFromFile('/tmp/\u{1F680}data.csv'), '_data');
  assert.equal(modelNameFromFile('wine.csv'), 'wine');
});

test("a device's holdout file reads a model whose names are spelled the other way", () => {
  const holdout = Holdout.fromText('\u00e9paisseur,x,kind\n1,2,B\u00e4r\n3,4,b\n5,6,B\u00e4r\n', 'kind', 'holdout.csv');
  const decomposed = { task: 'classification', features: ['e\u0301paisseur', 'x'], labels: ['Ba\u0308r', 'b'] } as unknown as Manifest;
  const aligned = alignHoldout(holdout, decomposed);
  assert.deepEqual([[...aligned.features], [...aligned.y]], [[1, 2, 3, 4, 5, 6], [0, 1, 0]]);
});
