import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { METRIC_DEFAULTS, type AnalysisMetric, type MetricSource } from '../../server/analysis/metric-definition.ts';
import { ScriptedProvider } from './scripted-provider.ts';
import { judgeRelative, relativeBound, relativeQueries, queryTaskProblem, relativeTaskProblem, withoutRoundingNoise } from '../../server/analysis/relative-check.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { Registry } from 'prom-client';
import { ReportMetricsExporter } from '../../server/metricproviders/report-metrics-exporter.ts';
import { RegistrySeriesRecorder } from '../../server/metricproviders/builtin/registry-series-recorder.ts';
import { evaluatePromql } from '../../server/metricproviders/builtin/promql-evaluator.ts';
import { parsePromql } from '../../server/metricproviders/builtin/promql-parser.ts';
import { InMemorySeriesSet } from '../../server/metricproviders/builtin/series-set.ts';
import type { MetricProvider } from '../../server/metricproviders/metric-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';

type Relative = Extract<MetricSource, { kind: 'relative' }>;
const accuracy: Relative = { kind: 'relative', metric: 'accuracy', comparator: '>=', tolerance: 0.5, toleranceMode: 'absolute', confidence: 0.95, windowMs: 300_000 };
const latency: Relative = { kind: 'relative', metric: 'latency_p95', comparator: '<=', tolerance: 0.1, toleranceMode: 'relative', confidence: 0.95, windowMs: 300_000 };
const errors: Relative = { kind: 'relative', metric: 'error_rate', comparator: '<=', tolerance: 0.1, toleranceMode: 'absolute', confidence: 0.95, windowMs: 300_000 };
const devices = (values: number[]) => new Map(values.map((value, i) => [`d${i + 1}`, value]));

describe('relative checks: bounds and verdicts', () => {
  it('bounds the baseline as issue #5 states', () => {
    assert.equal(relativeBound(accuracy, 95), 94.5, 'accuracy ≥ baseline − 0.5 points');
    assert.ok(Math.abs(relativeBound(latency, 10) - 11) < 1e-12, 'p95 latency ≤ baseline × 1.1');
    assert.ok(Math.abs(relativeBound(errors, 0.2) - 0.3) < 1e-12, 'error rate ≤ baseline + 0.1 %');
  });

  it('passes a candidate within tolerance', () => {
    const verdict = judgeRelative(accuracy, devices([95.1, 94.8, 95.3, 95.0]), devices([95.2, 95.0, 95.4, 95.1]), 4);
    assert.equal(verdict.phase, 'Successful');
    assert.match(verdict.message, /within tolerance/);
    assert.equal(verdict.evidence?.bound, 95.15 - 0.5);
  });

  it('fails a clearly worse candidate, with the test statistics as evidence', () => {
    const verdict = judgeRelative(accuracy, devices([61, 63, 58, 60]), devices([95, 96, 94, 95.5]), 4);
    assert.equal(verdict.phase, 'Failed');
    assert.equal(verdict.evidence?.mannWhitney.u, 0);
    assert.ok(Math.abs(verdict.evidence!.mannWhitney.p - 1 / 70) < 1e-12, 'exact one-sided p for 4 vs 4 fully separated is 1/C(8,4)');
    assert.equal(verdict.evidence?.wilcoxon.w, 0);
    assert.ok(Math.abs(verdict.evidence!.wilcoxon.p - 1 / 16) < 1e-12, 'exact one-sided p for 4 differences all negative is 1/2⁴');
    assert.ok(Math.abs(verdict.evidence!.p - 2 / 70) < 1e-12, 'the smaller p, doubled (Bonferroni over the two tests)');
    assert.match(verdict.message, /significantly worse at confidence 0.95/);
    const slow = judgeRelative(latency, devices([20, 22, 21, 25, 24]), devices([10, 11, 10, 12, 11]), 4);
    assert.equal(slow.phase, 'Failed');
  });

  it('fails a candidate worse on every device, however much the devices differ from each other (paired per device)', () => {
    // Each device's own data sets its level (70-98 points): the candidate is 5 points below on every one.
    const baseline = [70, 75, 80, 84, 86, 88, 90, 92, 95, 98];
    const verdict = judgeRelative(accuracy, devices(baseline.map((value) => value - 5)), devices(baseline), 4);
    assert.ok(verdict.evidence!.mannWhitney.p > 0.05, `unpaired, the spread between devices hides the shift (p=${verdict.evidence!.mannWhitney.p})`);
    assert.ok(Math.abs(verdict.evidence!.wilcoxon.p - 1 / 1024) < 1e-12, 'paired: every one of 10 differences is negative, p = 1/2¹⁰');
    assert.equal(verdict.phase, 'Failed');
    assert.ok(Math.abs(verdict.evidence!.shift - -4.5) < 1e-9, 'each candidate is 4.5 points below its bound');
    assert.match(verdict.message, /Wilcoxon signed-rank W\+=0 p=0\.0009766, Mann-Whitney U=\d+ p=0\.\d+; p=0\.001953 for both\): significantly worse/);
  });

  it('does not pass a candidate one holdout row worse on 8 of 20 devices and better on none (12-row holdouts): 3.33 points worse across the fleet is for a human', () => {
    // This passed as "the typical device is within tolerance": the median ignores the 8 devices
    // 8.33 points worse (16 times the tolerance); the mean margin counts them.
    const baseline = Array.from({ length: 20 }, () => 91.67);
    const candidate = baseline.map((value, i) => (i < 8 ? value - 8.33 : value));
    const verdict = judgeRelative(accuracy, devices(candidate), devices(baseline), 4);
    assert.equal(verdict.phase, 'Inconclusive', verdict.message);
    assert.equal(verdict.evidence!.shift, 0.5, 'the median device: 0.5 points above its bound');
    assert.ok(Math.abs(verdict.evidence!.meanShift! - (12 * 0.5 - 8 * 7.83) / 20) < 1e-9, `mean margin ${verdict.evidence!.meanShift}`);
    assert.equal(verdict.evidence!.outside, 8);
    assert.match(verdict.message, /8 outside tolerance \(worst d1: -7\.830 points past its bound\) on 20 devices/);
    assert.match(verdict.message, /outside tolerance but not significant at confidence 0\.95 \(mean margin < 0: 8 devices outside tolerance lose more than the others are within it\)$/);
  });

  it("passes one device's one-row miss against another's one-row hit on small holdouts (12 rows): the margins average out, and the typical device is within tolerance", () => {
    const hitAndMiss = (n: number, pairs: number) => {
      const baseline = Array.from({ length: n }, () => 91.67);
      const candidate = baseline.map((value, i) => (i < pairs ? value - 8.33 : i < 2 * pairs ? value + 8.33 : value));
      return judgeRelative(accuracy, devices(candidate), devices(baseline), 4);
    };
    for (const [n, pairs] of [[4, 1], [20, 4]] as const) {
      const verdict = hitAndMiss(n, pairs);
      assert.equal(verdict.phase, 'Successful', `${n} devices, ${pairs} miss(es) and hit(s): ${verdict.message}`);
      assert.ok(Math.abs(verdict.evidence!.meanShift! - 0.5) < 1e-9, `the mean margin is the tolerance: ${verdict.evidence!.meanShift}`);
      assert.equal(verdict.evidence!.outside, pairs);
      assert.match(verdict.message, /: within tolerance \(median and mean margin ≥ 0\)$/);
    }
  });

  it('does not pass a candidate much worse on a minority of devices: the mean margin is below the bound (review: 1 of 4 pilot devices 30 points worse, 9 of 20 devices 20 points worse)', () => {
    const pilot = judgeRelative(accuracy, devices([91, 91, 91, 61]), devices([91, 91, 91, 91]), 4);
    assert.equal(pilot.phase, 'Inconclusive', pilot.message);
    assert.equal(pilot.evidence!.shift, 0.5, 'the median device is within tolerance');
    assert.equal(pilot.evidence!.meanShift, -7);
    assert.deepEqual(pilot.evidence!.worst, { device: 'd4', margin: -29.5 });
    assert.match(pilot.message, /median 0\.5000 points, mean -7 points, 1 outside tolerance \(worst d4: -29\.50 points past its bound\) on 4 devices/);
    assert.match(pilot.message, /\(mean margin < 0: 1 device outside tolerance loses more than the others are within it\)$/);

    const baseline = Array.from({ length: 20 }, () => 92);
    const fleet = judgeRelative(accuracy, devices(baseline.map((value, i) => (i < 9 ? value - 20 : value))), devices(baseline), 4);
    assert.equal(fleet.phase, 'Inconclusive', fleet.message);
    assert.equal(fleet.evidence!.outside, 9);
    assert.match(fleet.message, /9 outside tolerance \(worst d1: -19\.50 points past its bound\) on 20 devices/);

    // Lower is better: one of five devices three times the latency of its baseline.
    const slow = judgeRelative(latency, devices([10, 10, 10, 10, 30]), devices([10, 10, 10, 10, 10]), 4);
    assert.equal(slow.phase, 'Inconclusive', slow.message);
    assert.deepEqual(slow.evidence!.worst, { device: 'd5', margin: 19, share: 1.9 });
    assert.match(slow.message, /\(mean margin > 0: 1 device outside tolerance loses more/);
  });

  it('with a relative tolerance, weighs each margin as a share of its own baseline: slow devices\' slack in ms does not make up for fast devices 3× slower', () => {
    // 9 of 20 devices at 10 ms go to 30 ms (+190 % over their bound); 11 at 1 s are unchanged (100 ms under theirs).
    const baseline = Array.from({ length: 20 }, (_, i) => (i < 9 ? 10 : 1000));
    const verdict = judgeRelative(latency, devices(baseline.map((value, i) => (i < 9 ? 30 : value))), devices(baseline), 4);
    assert.equal(verdict.phase, 'Inconclusive', verdict.message);
    assert.ok(verdict.evidence!.meanShift! < 0, `in ms the mean margin is on the good side (${verdict.evidence!.meanShift}): that is the slow devices' slack`);
    assert.ok(Math.abs(verdict.evidence!.meanShare! - 0.8) < 1e-9, `as shares of their baselines: (9 × 1.9 − 11 × 0.1) / 20 = 0.8, got ${verdict.evidence!.meanShare}`);
    assert.match(verdict.message, /mean -46\.45 ms \(\+80 % of each device's baseline on average\), 9 outside tolerance \(worst d1: 19 ms past its bound, \+190 % of its baseline\) on 20 devices/);
    // The same shift on every device passes either way, and an absolute tolerance has no shares.
    const even = judgeRelative(latency, devices(baseline.map((value) => value * 1.05)), devices(baseline), 4);
    assert.equal(even.phase, 'Successful', even.message);
    assert.equal(judgeRelative(accuracy, devices([95, 95, 95, 95]), devices([95, 95, 95, 95]), 4).evidence!.meanShare, undefined);
  });

  it('with a relative tolerance, a device whose baseline is 0 and whose candidate is above it is infinitely outside tolerance', () => {
    const zero = judgeRelative(latency, devices([0, 10, 10, 10]), devices([0, 10, 10, 10]), 4);
    assert.equal(zero.phase, 'Successful', `0 against 0 is within tolerance: ${zero.message}`);
    const above = judgeRelative(latency, devices([1, 1, 1, 1, 10]), devices([0, 10, 10, 10, 10]), 4);
    assert.equal(above.evidence!.meanShare, Number.POSITIVE_INFINITY);
    assert.equal(above.phase, 'Inconclusive', above.message);
  });

  it('says what decided: the per-device margins, not the candidate median against the bound of the baseline median (review: explain.ts)', () => {
    // Candidate median 90.5 is below the bound of the baseline median (92 − 0.5 = 91.5), yet
    // every device but d3 is above its own bound, and d3's miss is made up by the others.
    const pass = judgeRelative(accuracy, devices([70, 90, 91, 100]), devices([70, 89, 95, 99]), 4);
    assert.equal(pass.phase, 'Successful', pass.message);
    assert.equal(pass.evidence!.candidateMedian, 90.5);
    assert.equal(pass.evidence!.bound, 91.5);
    assert.doesNotMatch(pass.message, /= 91\.50/, 'no claim that the candidate median is compared with 91.5');
    assert.match(pass.message, /^candidate accuracy 90\.50 points vs baseline 92 points \(medians\); per-device margin candidate − bound \(baseline − 0\.5 points\): median 1 points, mean 0 points, 1 outside tolerance \(worst d3: -3\.500 points past its bound\) on 4 devices \(Wilcoxon/);
    assert.match(pass.message, /: within tolerance \(median and mean margin ≥ 0\)$/);
    // The reverse: the candidate median above the bound of the baseline median, most devices outside their own.
    const held = judgeRelative(accuracy, devices([100, 50, 89, 91]), devices([70, 60, 90, 92]), 4);
    assert.equal(held.phase, 'Inconclusive', held.message);
    assert.ok(held.evidence!.candidateMedian > held.evidence!.bound, 'the median is above the bound shown as context');
    assert.match(held.message, /median -0\.5000 points, mean 5 points, 3 outside tolerance \(worst d2: -9\.500 points past its bound\) on 4 devices/);
    assert.match(held.message, /\(median margin < 0: at most half the devices are within tolerance\)$/);
  });

  it('a candidate exactly at its bound is within tolerance, whatever rounding noise the arithmetic leaves (not significantly worse)', () => {
    // One row worse on 200-row holdouts is exactly the 0.5-point tolerance; computed as the
    // pipeline does (ratio × 100), candidate − (baseline − 0.5) is −1.8e-15 for these k, and six
    // such "worse" devices were a significant failure.
    const ks = [6, 13, 27, 29, 54, 58];
    const candidate = devices(ks.map((k) => (k / 200) * 100));
    const baseline = devices(ks.map((k) => ((k + 1) / 200) * 100));
    for (const [i, k] of ks.entries()) assert.ok((k / 200) * 100 - relativeBound(accuracy, ((k + 1) / 200) * 100) < 0, `device ${i}: the raw difference is below 0 (the noise this test is about)`);
    const verdict = judgeRelative(accuracy, candidate, baseline, 4);
    assert.equal(verdict.phase, 'Successful', verdict.message);
    assert.equal(verdict.evidence?.shift, 0);
    assert.equal(verdict.evidence?.wilcoxon.p, 1, 'no device is worse than its bound');
    assert.deepEqual(verdict.evidence?.candidate.map((entry) => entry.value), ks.map((k) => (k / 200) * 100), 'the evidence keeps the values as measured');

    // p95 latency exactly baseline × 1.1, through seconds to milliseconds: noise on the other side.
    const ms = [29, 58, 116, 231, 232];
    for (const v of ms) assert.ok(((v * 1.1) / 1000) * 1000 - relativeBound(latency, (v / 1000) * 1000) > 0, `${v} ms: the raw difference is above 0`);
    const fast = judgeRelative(latency, devices(ms.map((v) => ((v * 1.1) / 1000) * 1000)), devices(ms.map((v) => (v / 1000) * 1000)), 4);
    assert.equal(fast.phase, 'Successful', fast.message);
    assert.equal(fast.evidence?.shift, 0);

    // Real differences, however small against the values, still count: 1e-6 points worse on every device.
    const worse = judgeRelative(accuracy, devices(ks.map((k) => ((k + 1) / 200) * 100 - 0.5 - 1e-6)), baseline, 4);
    assert.equal(worse.phase, 'Failed', worse.message);
  });

  it('withoutRoundingNoise makes values within 1e-9 of their size equal, and leaves the rest', () => {
    assert.deepEqual(withoutRoundingNoise([14, 14.000000000000002, 13.999999999999998, 14.5, 0, 0, 1e-300]), [13.999999999999998, 13.999999999999998, 13.999999999999998, 14.5, 0, 0, 1e-300]);
    assert.deepEqual(withoutRoundingNoise([1, 1 + 1e-8, 2.2, 2.2000000000000002]), [1, 1 + 1e-8, 2.2, 2.2]);
  });

  it('is Inconclusive with too few devices, or when worse but not significantly', () => {
    const few = judgeRelative(accuracy, devices([60, 61, 62]), devices([95, 96, 97]), 4);
    assert.equal(few.phase, 'Inconclusive');
    assert.match(few.message, /too few samples: 3 devices with both candidate and baseline accuracy reports \(3 candidate, 3 baseline\) < minSamples 4/);
    const noisy = judgeRelative(accuracy, devices([90, 99, 93, 97]), devices([95, 96, 94, 98]), 4);
    assert.equal(noisy.phase, 'Inconclusive');
    assert.match(noisy.message, /outside tolerance but not significant/);
    const nan = judgeRelative(accuracy, devices([Number.NaN, 1, 2, 3]), devices([1, 2, 3, 4]), 4);
    assert.equal(nan.phase, 'Inconclusive');
  });

  it('names the rollout\'s devices short of a value when there are too few samples (an agent without --holdout reports none)', () => {
    const candidate = new Map([['qa-1', 90], ['qa-3', 95], ['qa-4', 94], ['qa-5', 93]]);
    const baseline = new Map([['qa-1', 91], ['qa-3', 95], ['qa-4', 95], ['qa-6', 92]]);
    const few = judgeRelative(accuracy, candidate, baseline, 4, ['qa-1', 'qa-2', 'qa-3', 'qa-4', 'qa-5', 'qa-6']);
    assert.equal(few.phase, 'Inconclusive');
    assert.equal(
      few.message,
      'too few samples: 3 devices with both candidate and baseline accuracy reports (4 candidate, 4 baseline) < minSamples 4; without both: qa-2 (neither), qa-5 (no baseline), qa-6 (no candidate) (neither: no benchmark report from it yet: its benchmark may still be running, or its agent has no --holdout)',
    );
    const many = judgeRelative(accuracy, new Map(), new Map(), 4, ['d-7', 'd-1', 'd-2', 'd-3', 'd-4', 'd-5', 'd-6']);
    assert.match(many.message, /; without both: d-1 \(neither\), d-2 \(neither\), d-3 \(neither\), d-4 \(neither\), d-5 \(neither\), and 2 more \(neither: no benchmark report from it yet: its benchmark may still be running, or its agent has no --holdout\)$/);
  });

  it('compares only devices with both candidate and baseline values', () => {
    const candidate = devices([95, 95, 95, 95, 95]);
    const baseline = devices([95, 95, 95, 95]);
    assert.equal(judgeRelative(accuracy, candidate, baseline, 5).phase, 'Inconclusive');
    assert.equal(judgeRelative(accuracy, candidate, baseline, 4).phase, 'Successful');
  });

  it('queries per-device series for the cohort, escaping device ids', () => {
    const queries = relativeQueries(accuracy, { model: 'wine', candidateVersion: '2', devices: ['dev.1', 'dev-2'] });
    assert.equal(queries.candidate, 'avg by (device) (avg_over_time(fleetprune_device_accuracy_ratio{model="wine",version="2",role="candidate",device=~"dev\\\\.1|dev-2"}[5m]))');
    assert.equal(queries.baseline, 'avg by (device) (avg_over_time(fleetprune_device_accuracy_ratio{model="wine",role="active",device=~"dev\\\\.1|dev-2"}[5m]))');
  });
});

describe('relative checks through the builtin provider', () => {
  const now = Date.UTC(2026, 0, 1, 12);
  const metric = (): AnalysisMetric => {
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }] });
    return (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
  };
  const side = (deviceId: string, role: 'candidate' | 'active', value: number, secondsAgo: number): DeviceReport => ({
    model: 'wine', version: role === 'candidate' ? '2' : '1', role, cohort: 'pilot', deviceId, accuracy: value,
    latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 50, ts: new Date(now - secondsAgo * 1000),
  });

  async function measure(history: InMemoryReportHistory, cohort: string[]) {
    const resolver = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }) });
    return takeMeasurement(metric(), 0, resolver, { model: 'wine', candidateVersion: '2', devices: cohort, args: {}, now: () => new Date(now) });
  }

  it('fails an over-pruned candidate on the same devices and records every input', async () => {
    const history = new InMemoryReportHistory();
    for (const [i, device] of ['d1', 'd2', 'd3', 'd4'].entries()) {
      history.add(side(device, 'active', 0.95 + i * 0.005, 30), side(device, 'candidate', 0.62 + i * 0.01, 30));
    }
    history.add(side('outsider', 'candidate', 0.1, 30));
    const measurement = await measure(history, ['d1', 'd2', 'd3', 'd4']);
    assert.equal(measurement.phase, 'Failed');
    assert.equal(measurement.provider, 'builtin');
    assert.deepEqual(Object.keys(measurement.queries), ['candidate', 'baseline']);
    assert.deepEqual(measurement.relative?.candidate.map((entry) => entry.device), ['d1', 'd2', 'd3', 'd4']);
    assert.ok(Math.abs(measurement.value![0]! - 62) < 1e-9, 'accuracy in points');
    assert.ok(Math.abs(measurement.thresholds.success! - (95.75 - 0.5)) < 1e-9);
    assert.match(measurement.message, /^accuracy: candidate accuracy 63\.50 points vs baseline 95\.75 points \(medians\); per-device margin candidate − bound \(baseline − 0\.5 points\): median -31\.75 points, mean -31\.75 points, 4 outside tolerance \(worst d1: -32\.50 points past its bound\) on 4 devices/);
  });

  it("compares with each device's baseline version only: an older active version's samples still in the window are left out", async () => {
    const history = new InMemoryReportHistory();
    for (const device of ['d1', 'd2', 'd3', 'd4', 'd5']) {
      // v1 (80%) was active until v2 (95%) was promoted; both still have samples in the window.
      history.add({ ...side(device, 'active', 0.8, 45), version: '0' }, side(device, 'active', 0.95, 30), side(device, 'candidate', 0.93, 30));
    }
    const resolver = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }) });
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4', 'd5'], args: {}, now: () => new Date(now) };
    const mixed = await takeMeasurement(metric(), 0, resolver, context);
    assert.equal(mixed.phase, 'Successful', 'without the baselines, v1 and v2 average to 87.5 and a worse candidate passes');
    const kept = await takeMeasurement(metric(), 0, resolver, { ...context, baselineVersions: ['1'] });
    assert.match(kept.queries.baseline!, /version="1",role="active"/);
    assert.equal(kept.phase, 'Failed');
    assert.ok(Math.abs(kept.thresholds.success! - 94.5) < 1e-9);
    assert.equal(relativeQueries(accuracy, { model: 'm', candidateVersion: '3', devices: ['a'], baselineVersions: ['2', '1', '2'] }).baseline.includes('version=~"1|2",role="active"'), true);
  });

  it('judges regression models by their holdout MSE (lower is better, within 2% of the baseline by default)', async () => {
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-mse' }] } }] });
    const mse = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const regression = (device: string, role: 'candidate' | 'active', value: number): DeviceReport => ({ ...side(device, role, 0, 30), accuracy: null, mse: value });
    const cohort = ['d1', 'd2', 'd3', 'd4', 'd5'];
    const measureMse = async (candidate: number) => {
      const history = new InMemoryReportHistory();
      cohort.forEach((device, i) => history.add(regression(device, 'active', 3000 + i * 10), regression(device, 'candidate', candidate + i * 10)));
      const resolver = new MetricProviderResolver({ builtin: new BuiltinProvider({ history }) });
      return takeMeasurement(mse, 0, resolver, { model: 'wine', candidateVersion: '2', devices: cohort, args: {}, now: () => new Date(now) });
    };
    const worse = await measureMse(3300);
    assert.equal(worse.phase, 'Failed');
    assert.match(worse.queries.candidate!, /fleetprune_device_mse\{model="wine",version="2",role="candidate"/);
    assert.match(worse.message, /^mse: candidate mse 3320 label units² vs baseline 3020 label units² \(medians\); per-device margin candidate − bound \(baseline × 1\.02\): median 239\.6 label units², mean 239\.6 label units² \(\+7\.\d+ % of each device's baseline on average\), 5 outside tolerance \(worst d1: 240 label units² past its bound, \+8 % of its baseline\) on 5 devices/);
    assert.equal((await measureMse(2990)).phase, 'Successful');
    assert.equal(relativeTaskProblem('mse', 'regression'), null);
    assert.match(relativeTaskProblem('accuracy', 'regression')!, /needs a classifier, and this is a regression model: check mse instead/);
    // A query metric reading the other task's series is warned about at the start (it may read something else too).
    assert.equal(
      queryTaskProblem('avg(fleetprune_device_accuracy_ratio{model="diab",role="candidate"})', 'regression'),
      'its query reads fleetprune_device_accuracy_ratio, which a regression model never reports (its devices report fleetprune_device_mse): every measurement of it would be an empty result',
    );
    assert.match(queryTaskProblem('max(fleetprune_device_mse)', 'classification')!, /^its query reads fleetprune_device_mse, which a classifier never reports/);
    assert.equal(queryTaskProblem('fleetprune_device_accuracy_ratio', 'classification'), null);
    assert.equal(queryTaskProblem('fleetprune_device_accuracy_ratio_total', 'regression'), null, 'another series whose name starts the same');
  });

  it('passes a good candidate and is Inconclusive when the pilot is too small', async () => {
    const history = new InMemoryReportHistory();
    for (const device of ['d1', 'd2', 'd3', 'd4']) history.add(side(device, 'active', 0.95, 30), side(device, 'candidate', 0.951, 30));
    assert.equal((await measure(history, ['d1', 'd2', 'd3', 'd4'])).phase, 'Successful');
    assert.equal((await measure(history, ['d1', 'd2'])).phase, 'Inconclusive');
    assert.equal((await measure(history, [])).phase, 'Inconclusive');
  });
});

describe('what a measurement queries with', () => {
  it("a relative check's queries time out after the default query timeout, whatever its window (a 720h window is not a 720h wait)", async () => {
    const spec = validateRolloutSpec({
      model: 'wine', candidateVersion: '2',
      steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy', window: '720h' } }] } }],
    });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const timeouts: number[] = [];
    const provider = new ScriptedProvider([(_query, context) => (timeouts.push(context.timeoutMs!), { resultType: 'vector', samples: [] })]);
    await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: provider }), { model: 'wine', candidateVersion: '2', devices: ['d1'], args: {}, now: () => new Date() });
    assert.deepEqual(timeouts, [METRIC_DEFAULTS.queryTimeoutMs, METRIC_DEFAULTS.queryTimeoutMs]);
  });

  it("a template cannot declare an argument the rollout sets (cohort, candidateVersion, ...), and the rollout's own always win", async () => {
    const template = (name: string) => ({
      name: 'mine',
      args: [{ name, value: '.+' }],
      metrics: [{ name: 'errors', provider: { builtin: { query: `sum(x{device=~"{{args.${name}}}"})` } }, successCondition: 'result[0] < 1' }],
    });
    assert.throws(
      () => validateRolloutSpec({ model: 'wine', candidateVersion: '2', analysisTemplates: [template('cohort')], steps: [{ analysis: { templates: [{ templateName: 'mine' }] } }] }),
      /analysisTemplates\[0\]\.args\[0\]\.name: "cohort" is set by the rollout/,
    );
    // A metric that carries such an argument anyway (a spec stored before this check) measures the rollout's cohort.
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', analysisTemplates: [template('site')], steps: [{ analysis: { templates: [{ templateName: 'mine' }] } }] });
    const metric = { ...(spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!, args: { cohort: '.+' } };
    const metricWithCohort = { ...metric, source: { ...metric.source, query: 'sum(x{device=~"{{args.cohort}}"})' } } as AnalysisMetric;
    const queries: string[] = [];
    const provider = new ScriptedProvider([(query) => (queries.push(query), { resultType: 'vector', samples: [{ labels: {}, value: 0 }] })]);
    await takeMeasurement(metricWithCohort, 0, new MetricProviderResolver({ builtin: provider }), { model: 'wine', candidateVersion: '2', devices: ['d1'], args: { cohort: 'd1|d2' }, now: () => new Date() });
    assert.deepEqual(queries, ['sum(x{device=~"d1|d2"})']);
  });
});

describe('what a relative check says when it cannot judge', () => {
  it('NaN or infinite values name the devices and the side they came from', () => {
    const verdict = judgeRelative(accuracy, new Map([['d1', 95], ['d2', Number.NaN], ['d3', 94], ['d4', 96]]), new Map([['d1', 95], ['d2', 95], ['d3', Number.POSITIVE_INFINITY], ['d4', 96]]), 4);
    assert.equal(verdict.phase, 'Inconclusive');
    assert.equal(verdict.message, 'accuracy has NaN or infinite per-device values: d2 (candidate NaN), d3 (baseline Infinity)');
  });

  it('no series at all from Prometheus for any rollout device adds a hint to check its scrape of this server; from the builtin provider, or with some series, it does not', async () => {
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy' } }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2'], args: {}, now: () => new Date() };
    const empty = () => ({ resultType: 'vector' as const, samples: [] });
    const hint = /; Prometheus has no such series for any of the rollout's devices: if this lasts, check that it scrapes this server's \/metrics/;
    const onPrometheus = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new ScriptedProvider([empty]), prometheus: new ScriptedProvider([empty], 'prometheus') }), context);
    assert.equal(onPrometheus.phase, 'Inconclusive');
    assert.match(onPrometheus.message!, hint);
    const onBuiltin = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new ScriptedProvider([empty]) }), context);
    assert.doesNotMatch(onBuiltin.message!, hint);
    const some = () => ({ resultType: 'vector' as const, samples: [{ labels: { device: 'd1' }, value: 0.9 }] });
    const withSome = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: new ScriptedProvider([empty]), prometheus: new ScriptedProvider([some], 'prometheus') }), context);
    assert.doesNotMatch(withSome.message!, hint);
  });
});

describe("a fleet's own series (its fleet label)", () => {
  it('the queries keep to the fleet label when the server has one', () => {
    const queries = relativeQueries(accuracy, { model: 'wine', candidateVersion: '2', devices: ['d1'], fleet: '0123abcd' });
    assert.equal(queries.candidate, 'avg by (device) (avg_over_time(fleetprune_device_accuracy_ratio{model="wine",version="2",role="candidate",device=~"d1",fleet="0123abcd"}[5m]))');
    assert.equal(queries.baseline, 'avg by (device) (avg_over_time(fleetprune_device_accuracy_ratio{model="wine",role="active",device=~"d1",fleet="0123abcd"}[5m]))');
  });

  it("another fleet's series for the same model and device ids (one Prometheus scraping two servers) are not this rollout's evidence", async () => {
    const report = (device: string, role: 'active' | 'candidate', accuracy: number): DeviceReport => ({
      model: 'wine', version: role === 'active' ? '1' : '2', role, cohort: 'pilot', deviceId: device, accuracy, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 60, ts: new Date(Date.now() - 5000),
    });
    // Two servers' exports, on the same device ids: ours a good candidate, theirs a far worse one.
    const recorders = [['fleet-a', 0.95], ['fleet-b', 0.2]].map(([fleet, candidate]) => {
      const registry = new Registry();
      const exporter = new ReportMetricsExporter(registry, fleet as string);
      for (const device of ['d1', 'd2', 'd3', 'd4']) {
        exporter.observe(report(device, 'active', 0.95));
        exporter.observe(report(device, 'candidate', candidate as number));
      }
      return new RegistrySeriesRecorder(registry);
    });
    // A Prometheus holding both servers' series.
    const shared: MetricProvider = {
      name: 'prometheus',
      async query(query, context) {
        const series = [];
        for (const recorder of recorders) {
          await recorder.scrape(context.now);
          series.push(...recorder.series());
        }
        const value = evaluatePromql(parsePromql(query), new InMemorySeriesSet(series), context.now.getTime());
        return { resultType: 'vector', samples: value.type === 'vector' ? value.samples : [] };
      },
    };
    const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy' } }] } }] });
    const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
    const context = { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4'], args: {}, now: () => new Date() };
    const resolver = new MetricProviderResolver({ builtin: shared, prometheus: shared });
    assert.equal((await takeMeasurement(metric, 0, resolver, { ...context, fleet: 'fleet-a' })).phase, 'Successful');
    assert.equal((await takeMeasurement(metric, 0, resolver, { ...context, fleet: 'fleet-b' })).phase, 'Failed');
    // Without the label, the two fleets' values were averaged per device: the other fleet's candidate failed ours.
    assert.equal((await takeMeasurement(metric, 0, resolver, context)).phase, 'Failed');
  });
});
