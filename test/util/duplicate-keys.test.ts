import assert from 'node:assert/strict';
import { test } from 'node:test';
import { duplicateJsonKey } from '../../shared/util/duplicate-keys.ts';

test('duplicateJsonKey names the first key given twice in one object, with the keys of the objects around it', () => {
  assert.equal(duplicateJsonKey('{"a":1,"b":2}'), null);
  assert.equal(duplicateJsonKey('{"a":1,"a":2}'), 'a');
  assert.equal(duplicateJsonKey('{"files":{"model.onnx":{"sha256":"x","bytes":1,"sha256":"y"}}}'), 'files.model.onnx.sha256');
  assert.equal(duplicateJsonKey('{"rows":[{"f0":1},{"f0":1,"f0":2}]}'), 'rows[1].f0', 'an array adds its index');
  assert.equal(duplicateJsonKey('{"rows":[{"f0":1,"f0":2}]}'), 'rows[0].f0');
  assert.equal(duplicateJsonKey('{"m":[[1,{"a":[]}],[2,"x",{"b":0,"b":1}]]}'), 'm[1][2].b', 'values of any kind count toward the index');
  assert.equal(duplicateJsonKey('{"a":{"x":1},"b":{"x":1}}'), null, 'the same key in two objects is fine');
  assert.equal(duplicateJsonKey('{"a":{"x":1},"a":2}'), 'a');
  assert.equal(duplicateJsonKey('{"a":"a","b":"a"}'), null, 'string values are not keys');
  assert.equal(duplicateJsonKey('{"a":["a","a"]}'), null);
  assert.equal(duplicateJsonKey('{"k":"}{\\"k\\":","k":1}'), 'k', 'braces and quotes inside strings are text');
  assert.equal(duplicateJsonKey('{"a":1,"\\u0061":2}'), 'a', 'keys compare after unescaping, as JSON.parse reads them');
  assert.equal(duplicateJsonKey('[1,2,{"a":null,"b":true,"a":false}]'), '[2].a');
  assert.equal(duplicateJsonKey('not json at all'), null);
  // Strings end at the first quote not escaped: one after an escaped backslash ends it.
  assert.equal(duplicateJsonKey('{"a\\\\":1,"a\\\\":2}'), 'a\\', 'a key ending in an escaped backslash');
  assert.equal(duplicateJsonKey('{"k":"\\\\","k":1}'), 'k', 'a value ending in an escaped backslash');
  assert.equal(duplicateJsonKey('{"k":"\\"}{\\"","j":1}'), null, 'an escaped quote does not end a string');
  assert.equal(duplicateJsonKey(' {\n "a" :\t1 ,\r\n "a"  :  2\n}\n '), 'a', 'whitespace anywhere');
  assert.equal(duplicateJsonKey(`{"rows":[[1,2]]${' '.repeat(1 << 20)}}`), null);
});

test('duplicateJsonKey reads a text nested 200,000 levels deep without overflowing the call stack', () => {
  const depth = 200_000;
  assert.equal(duplicateJsonKey(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`), null);
  assert.equal(duplicateJsonKey(`${'['.repeat(depth)}${']'.repeat(depth)}`), null);
  // The path's middle is elided: 200,000 steps would make the message 600 KB.
  assert.equal(duplicateJsonKey(`{"x":${'['.repeat(depth)}{"k":1,"k":2}${']'.repeat(depth)}}`), 'x[0][0][0][0][0]…[0][0][0][0][0].k');
});
