import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCondition } from '../../server/analysis/condition/condition-parser.ts';
import { evaluateNode } from '../../server/analysis/condition/condition-evaluator.ts';
import { evaluatePromql } from '../../server/metricproviders/builtin/promql-evaluator.ts';
import { parsePromql } from '../../server/metricproviders/builtin/promql-parser.ts';
import { InMemorySeriesSet, type Series } from '../../server/metricproviders/builtin/series-set.ts';

/**
 * min() and max() over a fleet-sized vector (a query result of some 200,000 series, the per-device
 * series of a large fleet): a number, not "Maximum call stack size exceeded" (an Error measurement,
 * which rolls the rollout back).
 */
const SIZE = 200_000;
const values = Array.from({ length: SIZE }, (_, i) => 0.5 + (i % 1000) / 2000);

describe('min and max over large vectors', () => {
  it('in conditions', () => {
    const parse = (source: string) => parseCondition(source, { identifiers: [] }).ast;
    assert.equal(evaluateNode(parse('min(result)'), { result: values, args: {} }), 0.5);
    assert.equal(evaluateNode(parse('max(result)'), { result: values, args: {} }), 0.5 + 999 / 2000);
    assert.ok(Number.isNaN(evaluateNode(parse('min(result)'), { result: [1, Number.NaN, 0], args: {} }) as number));
  });

  it('in the builtin provider\'s aggregations', () => {
    const now = Date.UTC(2026, 0, 1);
    const series: Series[] = values.map((v, i) => ({ labels: { __name__: 'fleetprune_device_accuracy_ratio', device: `d${i}` }, points: [{ t: now - 1000, v }] }));
    const set = new InMemorySeriesSet(series);
    const scalar = (query: string) => {
      const value = evaluatePromql(parsePromql(query), set, now);
      assert.equal(value.type, 'vector');
      return value.type === 'vector' ? value.samples.map((s) => s.value) : [];
    };
    assert.deepEqual(scalar('min(fleetprune_device_accuracy_ratio)'), [0.5]);
    assert.deepEqual(scalar('max(fleetprune_device_accuracy_ratio)'), [0.5 + 999 / 2000]);
  });
});
