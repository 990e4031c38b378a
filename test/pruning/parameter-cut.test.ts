import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatParamCut } from '../../shared/model/parameter-cut.ts';

test('a parameter cut shows one decimal, and more only where rounding would reach a bound it has not', () => {
  assert.equal(formatParamCut(0.9178), '91.8%');
  assert.equal(formatParamCut(0.75), '75.0%');
  assert.equal(formatParamCut(1 - 15 / 34_051), '99.96%', '15 of 34,051 parameters left is not all gone');
  assert.equal(formatParamCut(1 - 1 / 2_000_000), '99.9999%');
  assert.equal(formatParamCut(1 - 1 / 1e9), '>99.9999%');
  assert.equal(formatParamCut(1), '100.0%');
  assert.equal(formatParamCut(0), '0.0%');
  assert.equal(formatParamCut(3 / 100_000), '0.003%');
  assert.equal(formatParamCut(1e-9), '<0.0001%');
});
