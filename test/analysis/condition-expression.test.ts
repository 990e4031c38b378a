import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCondition } from '../../server/analysis/condition/condition-parser.ts';
import { conditionThreshold, evaluateCondition, evaluateNode, ConditionEvaluationError } from '../../server/analysis/condition/condition-evaluator.ts';
import { ConditionSyntaxError } from '../../server/analysis/condition/condition-tokenizer.ts';

const identifiers = ['baseline', 'threshold', 'args.threshold', 'label'];
const parse = (source: string) => parseCondition(source, { identifiers });
const value = (source: string, result: number | number[] = 0, extra: { baseline?: number | number[] } = {}) =>
  evaluateNode(parse(source).ast, { result, args: { threshold: '0.9', label: 'edge' }, ...extra });
const holds = (source: string, result: number | number[], extra: { baseline?: number | number[] } = {}) =>
  evaluateCondition(parse(source), { result, args: { threshold: '0.9' }, ...extra });

describe('condition expressions: precedence and evaluation', () => {
  it('follows arithmetic precedence and associativity', () => {
    assert.equal(value('1 + 2 * 3'), 7);
    assert.equal(value('(1 + 2) * 3'), 9);
    assert.equal(value('10 - 4 - 3'), 3);
    assert.equal(value('12 / 3 / 2'), 2);
    assert.equal(value('-2 * 3'), -6);
    assert.equal(value('--2'), 2);
    assert.equal(value('7 % 4 + 1'), 4);
    assert.equal(value('1.5e2 + .5'), 150.5);
  });

  it('binds && tighter than ||, and ! tightest', () => {
    assert.equal(value('true || false && false'), true);
    assert.equal(value('(true || false) && false'), false);
    assert.equal(value('!false && false'), false);
    assert.equal(value('!(false && false)'), true);
    assert.equal(value('not false and true or false'), true);
    assert.equal(value('(1 < 2) == true'), true);
  });

  it('short-circuits && and || (the right side is not evaluated)', () => {
    assert.equal(holds('len(result) > 0 && result[0] > 1', []), false);
    assert.equal(holds('len(result) == 0 || result[5] > 1', []), true);
  });

  it('indexes vectors and uses a one-element vector as a number', () => {
    assert.equal(holds('result[0] >= 0.95', [0.97]), true);
    assert.equal(holds('result[1] >= 0.95', [0.97, 0.9]), false);
    assert.equal(holds('result >= 0.95', [0.96]), true);
    assert.equal(holds('result <= baseline * 1.1', [105], { baseline: [100] }), true);
    assert.equal(holds('result <= baseline * 1.1', [111], { baseline: 100 }), false);
    assert.equal(holds('result[0] >= 0.5', 0.7), true, 'a scalar indexes as a one-element vector');
  });

  it('supports len, all, any, min, max, avg, sum, abs, isNaN', () => {
    assert.equal(holds('len(result) > 0 && all(result, {# > 0.9})', [0.95, 0.91]), true);
    assert.equal(holds('len(result) > 0 && all(result, {# > 0.9})', [0.95, 0.89]), false);
    assert.equal(holds('any(result, {# < 0})', [1, -1]), true);
    assert.equal(value('min(result)', [3, 1, 2]), 1);
    assert.equal(value('max(result)', [3, 1, 2]), 3);
    assert.equal(value('avg(result)', [3, 1, 2]), 2);
    assert.equal(value('sum(result)', [3, 1, 2]), 6);
    assert.equal(value('abs(-3)'), 3);
    assert.equal(value('isNaN(result)', [Number.NaN]), true);
  });

  it('compares at the boundary: <= and >= hold on equality, < and > do not; == and != on numbers and booleans', () => {
    assert.equal(value('1 <= 1'), true);
    assert.equal(value('1 < 1'), false);
    assert.equal(value('1 >= 1'), true);
    assert.equal(value('1 > 1'), false);
    assert.equal(value('1 == 1'), true);
    assert.equal(value('1 != 1'), false);
    assert.equal(value('1 != 2'), true);
    assert.equal(value('true == true'), true);
    assert.equal(value('true != true'), false);
    assert.equal(value('true != false'), true);
    assert.equal(value('false != false'), false);
    // As a rollout meets them: a result exactly at its limit passes an inclusive bound.
    assert.equal(holds('result[0] <= 0.005', [0.005]), true);
    assert.equal(holds('result[0] < 0.005', [0.005]), false);
    assert.equal(holds('result[0] >= threshold', [0.9]), true);
    assert.equal(holds('result[0] > threshold', [0.9]), false);
  });

  it('reads named arguments, bare and as args.NAME', () => {
    assert.equal(holds('result[0] >= threshold', [0.95]), true);
    assert.equal(holds('result[0] >= args.threshold', [0.85]), false);
  });

  it('finds the threshold a condition compares the result with', () => {
    const scope = { result: [1], baseline: [200], args: { threshold: '0.9' } };
    assert.equal(conditionThreshold(parse('result[0] >= 0.95'), scope), 0.95);
    assert.equal(conditionThreshold(parse('0.95 <= result[0]'), scope), 0.95);
    assert.ok(Math.abs(conditionThreshold(parse('result <= baseline * 1.1'), scope)! - 220) < 1e-9);
    assert.equal(conditionThreshold(parse('len(result) > 0 && all(result, {# > threshold})'), scope), 0, 'first comparison wins');
    assert.equal(conditionThreshold(parse('all(result, {# > threshold})'), scope), 0.9);
    assert.equal(conditionThreshold(parse('true'), scope), undefined);
  });
});

describe('condition expressions: errors', () => {
  const syntax = (source: string, message: RegExp) => assert.throws(() => parse(source), (error: unknown) => error instanceof ConditionSyntaxError && message.test(error.message), source);
  it('rejects bad syntax with the column', () => {
    syntax('', /empty expression/);
    syntax('result >=', /expected a value, found end of expression at column 10/);
    syntax('result[0] >= 0.95)', /unexpected "\)" at column 18/);
    syntax('(result > 1', /expected "\)" to close "\(", found end of expression/);
    syntax('result = 1', /unexpected "=" \(did you mean "=="\?\) at column 8/);
    syntax('result & 1', /did you mean "&&"/);
    syntax('resutl > 1', /unknown name "resutl" \(known: .*result.*\) at column 1/);
    syntax('foo(result)', /unknown function "foo"/);
    syntax('len(result, 1)', /len\(\) takes 1 argument, got 2/);
    syntax('all(result)', /all\(\) needs a \{predicate\}/);
    syntax('len(result, {# > 1})', /len\(\) takes no \{predicate\}/);
    syntax('# > 1', /"#" is only allowed inside/);
    syntax('1 < result < 3', /comparisons do not chain/);
    syntax('result $ 2', /unexpected character "\$"/);
    syntax('12abc > 1', /malformed number/);
  });

  it('reports evaluation errors instead of guessing', () => {
    const fails = (source: string, result: number[], message: RegExp) =>
      assert.throws(() => holds(source, result), (error: unknown) => error instanceof ConditionEvaluationError && message.test(error.message), source);
    fails('result[3] > 1', [1, 2], /index 3 is out of range \(the vector has 2 values\)/);
    // At exactly the length: the first index past the end (the last one, 1, is read).
    fails('result[2] > 1', [1, 2], /^index 2 is out of range \(the vector has 2 values\) \(column 7\)$/);
    fails('result[1] > 1', [1], /^index 1 is out of range \(the vector has 1 value\) \(column 7\)$/);
    assert.equal(holds('result[1] > 1', [1, 2]), true);
    fails('result > 1', [1, 2], /needs a single number, got a vector of 2 values/);
    fails('result[0] + 1', [1], /must be true or false, but it is 2/);
    fails('result[0] / 0 > 1', [1], /division by zero/);
    fails('result[0] > 1 && 3', [2], /needs true or false, got 3/);
    assert.throws(() => evaluateCondition(parse('result <= baseline'), { result: [1] }), /"baseline" has no value/);
    assert.throws(() => evaluateCondition(parse('result <= label'), { result: [1], args: { label: 'edge' } }), /argument "label" is "edge", not a number/);
  });
});
