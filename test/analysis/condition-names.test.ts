import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCondition } from '../../server/analysis/condition/condition-parser.ts';
import { ConditionSyntaxError } from '../../server/analysis/condition/condition-tokenizer.ts';
import { evaluateCondition } from '../../server/analysis/condition/condition-evaluator.ts';
import { parseRolloutSpec, RolloutSpecError } from '../../server/rollout/rollout-spec.ts';

const NAMES = ['toString', 'valueOf', 'constructor', 'hasOwnProperty', 'isPrototypeOf'];

test('a condition naming an unknown Object.prototype member is "unknown name", not a native function in the message', () => {
  for (const name of NAMES) {
    assert.throws(
      () => parseCondition(`result[0] > ${name}`, { identifiers: [] }),
      (error: unknown) => error instanceof ConditionSyntaxError && /^unknown name "/.test(error.message) && !error.message.includes('native code'),
      name,
    );
  }
});

test('an argument named like an Object.prototype member can be used in a condition', () => {
  for (const name of NAMES) {
    const condition = parseCondition(`result[0] >= ${name}`, { identifiers: [name] });
    assert.equal(evaluateCondition(condition, { result: [1], args: { [name]: '0.5' } }), true, name);
    assert.equal(evaluateCondition(condition, { result: [0.1], args: { [name]: '0.5' } }), false, name);
  }
  const spec = parseRolloutSpec(
    [
      'model: wine',
      'candidateVersion: "2"',
      'analysisTemplates:',
      '  - name: floor',
      '    args: [{name: valueOf, value: "0.5"}]',
      '    metrics: [{name: m, provider: {builtin: {query: "1"}}, successCondition: "result[0] >= valueOf"}]',
      'steps:',
      '  - setWeight: 50',
      '  - analysis: {templates: [{templateName: floor}]}',
    ].join('\n'),
    'spec',
  );
  assert.equal(spec.steps.length, 2);
  assert.throws(
    () => parseRolloutSpec('model: wine\ncandidateVersion: "2"\nsteps:\n  - analysis: {metrics: [{name: m, provider: {builtin: {query: "1"}}, successCondition: "result[0] > toString"}]}\n', 'spec'),
    (error: unknown) => error instanceof RolloutSpecError && /successCondition: unknown name "toString"/.test(error.message),
  );
});

test('an analysis argument named __proto__ is refused by name, not dropped (its queries read "[object Object]", its conditions NaN)', () => {
  const template = (query: string, condition: string) =>
    [
      'model: wine',
      'candidateVersion: "2"',
      'analysisTemplates:',
      '  - name: t',
      '    args: [{name: __proto__, value: "0.5"}]',
      `    metrics: [{name: m, provider: {prometheus: {query: ${JSON.stringify(query)}}}, successCondition: ${JSON.stringify(condition)}}]`,
      'steps:',
      '  - analysis: {templates: [{templateName: t}]}',
    ].join('\n');
  for (const [query, condition] of [['up{x="{{args.__proto__}}"}', 'result[0] > 0'], ['up', 'result[0] > __proto__']]) {
    assert.throws(
      () => parseRolloutSpec(template(query, condition), 'spec'),
      (error: unknown) => error instanceof RolloutSpecError && error.message === 'spec: invalid rollout spec: analysisTemplates[0].args[0].name: must not be "__proto__"',
      query,
    );
  }
  const step = 'model: wine\ncandidateVersion: "2"\nsteps:\n  - analysis: {args: [{name: __proto__, value: "1"}], metrics: [{name: m, provider: {prometheus: {query: "up"}}, successCondition: "result[0] > 0"}]}\n';
  assert.throws(() => parseRolloutSpec(step, 'spec'), (error: unknown) => error instanceof RolloutSpecError && /steps\[0\]\.analysis\.args\[0\]\.name: must not be "__proto__"/.test(error.message));
});
