import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeDataProblem, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';

const describe = (value: unknown, root = 'body') => {
  const problem = untrustedDataProblem(value, 8);
  return problem && describeDataProblem(problem, root);
};

test('untrusted data: __proto__ keys, NUL characters and deep nesting are named by path', () => {
  assert.equal(describe({ labels: { site: 'osaka' }, steps: [{ weight: 10 }], note: 'ünïcode ✓' }), null);
  assert.equal(describe(JSON.parse('{"labels": {"__proto__": "x"}}')), 'body.labels.__proto__: "__proto__" is not allowed as a key');
  assert.equal(describe({ steps: [{}, { reason: 'a\u0000b' }] }), 'body.steps[1].reason: contains a NUL character (U+0000)');
  assert.equal(describe({ labels: { 'si\u0000te': 'x' } }), 'body.labels.si\u0000te: key contains a NUL character (U+0000)');
  assert.equal(describe('a\u0000'), 'body: contains a NUL character (U+0000)');
  assert.equal(describe('a\u0000', ''), 'contains a NUL character (U+0000)');
  assert.equal(describe({ a: ['\u0000'] }, ''), 'a[0]: contains a NUL character (U+0000)');
  // Unpaired surrogates (JSON's "\ud800") have no UTF-8: a store would keep U+FFFD instead.
  const surrogate = 'contains an unpaired surrogate (\\ud800 to \\udfff): not well-formed Unicode';
  assert.equal(describe(JSON.parse('{"label": "a\\ud800b"}')), `body.label: ${surrogate}`);
  assert.equal(describe(JSON.parse('{"label": "\\udfff"}')), `body.label: ${surrogate}`);
  assert.equal(describe(JSON.parse('{"labels": {"\\udbff": "x"}}')), `body.labels.\udbff: key ${surrogate}`);
  assert.equal(describe({ emoji: '😀 \ud83d\ude00' }), null, 'a pair is one character');
  let deep: unknown = 'leaf';
  for (let i = 0; i < 9; i++) deep = [deep];
  assert.equal(describe(deep), 'body: nested deeper than 8 levels');
  // Binary data is not text: a Buffer holding a zero byte is fine, and is not walked index by index.
  assert.equal(describe({ chunk: Buffer.alloc(1 << 20) }), null);
});
