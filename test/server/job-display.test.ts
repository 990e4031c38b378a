import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatJob } from '../../server/cli/job-display.ts';

test('jobs show: the sweep scores each ε by the weights it keeps, and says of an ε the sweep did not retrain that it was not, rather than "-"', () => {
  const sweep = [
    // Retrained smallest model first: ε 0.5 fell outside tolerance, ε 0.3 was within (as transferred), so ε 0.1 was not retrained.
    { epsilon: 0.1, params: 900, paramCut: 0.5, test: null, weights: null },
    { epsilon: 0.3, params: 400, paramCut: 0.8, test: { accuracy: 0.95 }, weights: 'transferred' },
    { epsilon: 0.5, params: 100, paramCut: 0.95, test: { accuracy: 0.8 }, weights: 'retrained' },
  ];
  const summary = { epsilon: 0.3, paramCut: 0.8, originalLayers: [16, 16, 3], prunedLayers: [8, 4, 3], backend: 'wasm', seconds: 3.2, sweep, warnings: [] };
  const text = formatJob({
    id: 'job-1', kind: 'prune', state: 'succeeded', progress_json: '', error: '', created_at: '2026-12-06T00:00:00.000Z', updated_at: '2026-12-06T00:01:00.000Z',
    created_by: 'token:ops', node: 'n1', request_json: JSON.stringify({ name: 'iris', label: 'species' }),
    result_json: JSON.stringify({ general: { model: 'iris', version: '1' }, pruned: { model: 'iris', version: '2' }, summary }),
  });
  const table = text.slice(text.indexOf('  ε')).trimEnd().split('\n').map((line) => line.trim().split(/ {2,}/));
  assert.deepEqual(table, [
    ['ε', 'PARAMS', 'CUT', 'TEST'],
    ['0.1', '900', '50.0%', 'not retrained'],
    ['* 0.3', '400', '80.0%', 'acc 95.00% (transferred weights)'],
    ['0.5', '100', '95.0%', 'acc 80.00%'],
  ]);
});
