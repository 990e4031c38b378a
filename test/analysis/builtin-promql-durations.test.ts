import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { parsePromql, type PromExpr } from '../../server/metricproviders/builtin/promql-parser.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';

// Range durations as Prometheus writes them (model.ParseDuration): integers with units
// ms s m h d w y, largest first, each at most once. docs/rollout-spec.md, "The builtin provider's PromQL".

const rangeOf = (query: string) => (parsePromql(query) as Extract<PromExpr, { type: 'range-call' }>).selector.rangeMs;
const DAY = 86_400_000;

test('range selectors take days, weeks and years, and combinations of units, as Prometheus does', () => {
  for (const [range, ms] of [
    ['1d', DAY],
    ['1w', 7 * DAY],
    ['1y', 365 * DAY],
    ['2d12h', 2.5 * DAY],
    ['1h30m', 5_400_000],
    ['1m30s500ms', 90_500],
    ['250ms', 250],
    ['24h', DAY],
  ] as const) {
    assert.equal(rangeOf(`max_over_time(x[${range}])`), ms, range);
  }
});

test('range durations Prometheus refuses are refused: fractions, out-of-order or repeated units, upper case, zero', () => {
  for (const range of ['1.5m', '0.5h', '30m1h', '1m1m', '5M', '1D', '0s', '0', '5', '1h30', '300y']) {
    assert.throws(() => parsePromql(`max_over_time(x[${range}])`), { message: new RegExp(`^bad range duration "${range.replace('.', '\\.')}"`) }, range);
  }
});

test('a builtin spec query over [1d] validates, and a prometheus metric on the builtin provider runs with [1w]', async () => {
  validateRolloutSpec({
    model: 'm',
    candidateVersion: '2',
    steps: [{ analysis: { metrics: [{ name: 'x', provider: { builtin: { query: 'max_over_time(fleetprune_device_accuracy_ratio[1d])' } }, successCondition: 'result[0] > 0' }] } }],
  });
  const now = Date.UTC(2026, 0, 1, 12);
  const history = new InMemoryReportHistory();
  const report = (daysAgo: number, accuracy: number) => ({
    model: 'wine', version: '2', role: 'candidate' as const, cohort: 'pilot', deviceId: 'd1', accuracy,
    latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 10, ts: new Date(now - daysAgo * DAY),
  });
  history.add(report(6, 0.99), report(2, 0.9), report(0.5, 0.8));
  const provider = new BuiltinProvider({ history });
  const value = async (query: string) => (await provider.query(query, { now: new Date(now) })).samples.map((sample) => sample.value);
  assert.deepEqual(await value('max_over_time(fleetprune_device_accuracy_ratio[1w])'), [0.99]);
  assert.deepEqual(await value('max_over_time(fleetprune_device_accuracy_ratio[3d])'), [0.9]);
  assert.deepEqual(await value('max_over_time(fleetprune_device_accuracy_ratio[1d])'), [0.8]);
});
