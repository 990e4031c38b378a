import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AnalysisRun } from '../../server/analysis/analysis-run.ts';
import { assessMetric } from '../../server/analysis/analysis-assessment.ts';
import type { RunAssessment } from '../../server/analysis/analysis-assessment.ts';
import type { Measurement } from '../../server/analysis/measurement.ts';
import { MAX_MEASUREMENTS, type AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { ManualScheduler, SystemScheduler } from '../../server/analysis/scheduler.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { ScriptedProvider, type Scripted } from './scripted-provider.ts';

/** Metrics resolved through the real spec validation, so defaults are the documented ones. */
function metric(fields: Record<string, unknown>): AnalysisMetric {
  const spec = validateRolloutSpec({
    model: 'wine',
    candidateVersion: '2',
    steps: [{ analysis: { metrics: [{ name: 'm', provider: { prometheus: { query: 'q{model="{{args.model}}"}' } }, successCondition: 'result[0] >= 0.9', ...fields }] } }],
  });
  const step = spec.steps[0]!;
  assert.equal(step.kind, 'analysis');
  return (step as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
}

interface Harness {
  scheduler: ManualScheduler;
  provider: ScriptedProvider;
  run: AnalysisRun;
  seen: Measurement[];
  completed: RunAssessment[];
}

function harness(metrics: AnalysisMetric[], script: Scripted[], previous: Measurement[] = []): Harness {
  const scheduler = new ManualScheduler(Date.UTC(2026, 0, 1));
  const provider = new ScriptedProvider(script);
  const seen: Measurement[] = [];
  const completed: RunAssessment[] = [];
  const run = new AnalysisRun({
    metrics,
    providers: new MetricProviderResolver({ builtin: provider }),
    scheduler,
    previous,
    context: { model: 'wine', candidateVersion: '2', devices: ['d1'], args: { model: 'wine', candidateVersion: '2', rollout: 'r', cohort: 'd1', cohortSize: '1', step: '0' } },
    onMeasurement: (m) => {
      seen.push(m);
    },
    onComplete: (a) => {
      completed.push(a);
    },
  });
  return { scheduler, provider, run, seen, completed };
}

describe('analysis engine: measurement verdicts', () => {
  it('measures at the interval up to count, recording the rendered query, values and thresholds', async () => {
    const h = harness([metric({ interval: '1m', count: 3 })], [[0.95]]);
    h.run.start();
    await h.scheduler.advance(0);
    assert.equal(h.seen.length, 1);
    await h.scheduler.advance(59_000);
    assert.equal(h.seen.length, 1, 'not before the interval');
    await h.scheduler.advance(1_000);
    assert.equal(h.seen.length, 2);
    await h.scheduler.advance(120_000);
    assert.equal(h.seen.length, 3, 'stops at count');
    assert.deepEqual(h.provider.calls.map((c) => c.at - Date.UTC(2026, 0, 1)), [0, 60_000, 120_000]);
    assert.equal(h.completed[0]?.phase, 'Successful');
    const first = h.seen[0]!;
    assert.equal(first.phase, 'Successful');
    assert.deepEqual(first.queries, { query: 'q{model="wine"}' });
    assert.deepEqual(first.value, [0.95]);
    assert.deepEqual(first.thresholds, { successCondition: 'result[0] >= 0.9', success: 0.9, minSamples: 1 });
    assert.equal(first.startedAt, '2026-01-01T00:00:00.000Z');
    assert.match(first.message, /successCondition "result\[0\] >= 0.9" is true/);
  });

  it('is Inconclusive on an empty result, NaN, or too few samples — never Successful', async () => {
    for (const [script, fields, expected] of [
      [[[]], {}, /^m: empty result: no series yet\? This metric has no initialDelay, so its first measurement came as its analysis began \(when its step began, or at a resume\), maybe before the devices' reports reached the metrics \(give it one, e\.g\. initialDelay: 1m\); or its query reads a series these devices never report$/],
      [[[]], { initialDelay: '30s' }, /^m: empty result$/],
      [[[Number.NaN]], {}, /has NaN/],
      // Not Failed on the values beside the NaN: avg(result) over [0.1, NaN] could be anything.
      [[[0.1, Number.NaN]], { successCondition: undefined, failureCondition: 'avg(result) > 0.05' }, /has NaN/],
      [[[0.95, 0.96]], { minSamples: 3, successCondition: 'all(result, {# >= 0.9})' }, /too few samples: 2 < minSamples 3/],
    ] as const) {
      const h = harness([metric(fields)], [[...script[0]]]);
      h.run.start();
      await h.scheduler.advance('initialDelay' in fields ? 30_000 : 0);
      assert.equal(h.seen[0]?.phase, 'Inconclusive');
      assert.match(h.seen[0]!.message, expected);
      assert.equal(h.completed[0]?.phase, 'Inconclusive');
    }
  });

  it('an empty result says only its first measurement may have come too early', async () => {
    const h = harness([metric({ interval: '1m', count: 2, inconclusiveLimit: 2 })], [[], []]);
    h.run.start();
    await h.scheduler.advance(0);
    await h.scheduler.advance(60_000);
    assert.deepEqual(
      h.seen.map((m) => m.message.replace(/ \(give it one.*$/, '')),
      ["m: empty result: no series yet? This metric has no initialDelay, so its first measurement came as its analysis began (when its step began, or at a resume), maybe before the devices' reports reached the metrics", 'm: empty result'],
    );
  });

  it('counts samples with samplesQuery when given', async () => {
    const provider: Scripted = (query) => ({ resultType: 'vector', samples: [{ labels: {}, value: query.startsWith('count') ? 40 : 0.99 }] });
    const h = harness([metric({ minSamples: 50, provider: { prometheus: { query: 'ratio', samplesQuery: 'count_it' } } })], [provider]);
    h.run.start();
    await h.scheduler.advance(0);
    assert.equal(h.seen[0]?.phase, 'Inconclusive');
    assert.equal(h.seen[0]?.samples, 40);
    assert.deepEqual(h.seen[0]?.queries, { query: 'ratio', samplesQuery: 'count_it' });
  });

  it('follows successCondition and failureCondition like Argo', async () => {
    const verdict = async (fields: Record<string, unknown>, value: number) => {
      const h = harness([metric(fields)], [[value]]);
      h.run.start();
      await h.scheduler.advance(0);
      return h.seen[0]!.phase;
    };
    assert.equal(await verdict({}, 0.5), 'Failed', 'only success, false → Failed');
    assert.equal(await verdict({ successCondition: undefined, failureCondition: 'result[0] < 0.5' }, 0.6), 'Successful');
    assert.equal(await verdict({ successCondition: undefined, failureCondition: 'result[0] < 0.5' }, 0.4), 'Failed');
    assert.equal(await verdict({ failureCondition: 'result[0] < 0.5' }, 0.7), 'Inconclusive', 'both set, neither holds');
    assert.equal(await verdict({ successCondition: 'result[3] > 0' }, 0.7), 'Error', 'evaluation error');
  });

  it('turns provider failures into Error measurements and stops after consecutiveErrorLimit', async () => {
    const h = harness([metric({ interval: '10s', count: 10, consecutiveErrorLimit: 2 })], ['error']);
    h.run.start();
    await h.scheduler.advance(60_000);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Error', 'Error', 'Error']);
    assert.match(h.seen[0]!.message, /scripted: connection refused/);
    assert.equal(h.seen[0]!.value, null);
    assert.equal(h.completed[0]?.phase, 'Error');
    assert.match(h.completed[0]!.message, /3 consecutive errors > consecutiveErrorLimit 2/);
  });
});

describe('analysis engine: run phase', () => {
  it('fails at failureLimit + 1 failures, stopping further measurements', async () => {
    const h = harness([metric({ interval: '1m', count: 10, failureLimit: 1 })], [[0.95], [0.5], [0.95], [0.4], [0.95]]);
    h.run.start();
    await h.scheduler.advance(30 * 60_000);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Successful', 'Failed', 'Successful', 'Failed']);
    assert.equal(h.completed[0]?.phase, 'Failed');
    assert.match(h.completed[0]!.message, /m: 2 failed measurements > failureLimit 1/);
    assert.equal(h.scheduler.pendingCount, 0);
  });

  it('failureLimit -1 never fails on failures, but needs a success to succeed', async () => {
    const h = harness([metric({ interval: '1m', count: 3, failureLimit: -1 })], [[0.1], [0.95], [0.1]]);
    h.run.start();
    await h.scheduler.advance(10 * 60_000);
    assert.equal(h.completed[0]?.phase, 'Successful');

    const none = harness([metric({ interval: '1m', count: 3, failureLimit: -1 })], [[0.1]]);
    none.run.start();
    await none.scheduler.advance(10 * 60_000);
    assert.equal(none.completed[0]?.phase, 'Inconclusive');
    assert.match(none.completed[0]!.message, /^m: no successful measurement in 3 \(failed 3, inconclusive 0\)/);
  });

  it('never succeeds when the backend is down for the whole analysis: its Errors are retried until consecutiveErrorLimit, then Error', async () => {
    // count 3 with the default consecutiveErrorLimit 4: Errors do not count towards count, so the
    // metric keeps measuring (at its interval) until the fifth consecutive Error ends it.
    const h = harness([metric({ interval: '1m', count: 3 })], ['error']);
    h.run.start();
    await h.scheduler.advance(10 * 60_000);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Error', 'Error', 'Error', 'Error', 'Error']);
    assert.deepEqual(h.provider.calls.map((c) => c.at - Date.UTC(2026, 0, 1)), [0, 60_000, 120_000, 180_000, 240_000]);
    assert.equal(h.completed[0]?.phase, 'Error');
    assert.match(h.completed[0]!.message, /^m: 5 consecutive errors > consecutiveErrorLimit 4: m: scripted: connection refused$/);

    // Tolerated Inconclusives (NaN every time) are no success either.
    const nan = harness([metric({ interval: '1m', count: 2, inconclusiveLimit: -1 })], [[Number.NaN]]);
    nan.run.start();
    await nan.scheduler.advance(10 * 60_000);
    assert.equal(nan.completed[0]?.phase, 'Inconclusive');
    assert.match(nan.completed[0]!.message, /no successful measurement in 2 \(failed 0, inconclusive 2\)/);

    // failureLimit equal to count: every measurement Failed is not a success.
    const failing = harness([metric({ interval: '1m', count: 2, failureLimit: 2 })], [[0.1]]);
    failing.run.start();
    await failing.scheduler.advance(10 * 60_000);
    assert.equal(failing.completed[0]?.phase, 'Inconclusive');

    // consecutiveSuccessLimit equal to count: reachable, and reached.
    const exact = harness([metric({ interval: '1m', count: 2, consecutiveSuccessLimit: 2 })], [[0.95]]);
    exact.run.start();
    await exact.scheduler.advance(10 * 60_000);
    assert.equal(exact.completed[0]?.phase, 'Successful');
  });

  it('Errors do not count towards count (Argo: MetricResult.Count is the measurements without Error)', async () => {
    // Before, error, error, 0.95 with count 3 was Successful on one real measurement.
    const h = harness([metric({ interval: '1m', count: 3 })], ['error', 'error', [0.95], [0.5]]);
    h.run.start();
    await h.scheduler.advance(0);
    assert.equal(h.run.assessment().metrics.m?.message, 'm: 0/3 measurements taken (1 error retried, not counted)');
    await h.scheduler.advance(10 * 60_000);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Error', 'Error', 'Successful', 'Failed'], 'three measurements without Error: the Failed one is the third');
    assert.deepEqual(h.seen.map((m) => m.index), [0, 1, 2, 3]);
    assert.deepEqual(h.provider.calls.map((c) => c.at - Date.UTC(2026, 0, 1)), [0, 60_000, 120_000, 180_000], 'an Error of a metric with an interval is retried after the interval');
    assert.equal(h.completed[0]?.phase, 'Failed');
    assert.match(h.completed[0]!.message, /^m: 1 failed measurement > failureLimit 0/);

    const ok = harness([metric({ interval: '1m', count: 3 })], ['error', 'error', [0.95]]);
    ok.run.start();
    await ok.scheduler.advance(10 * 60_000);
    assert.deepEqual(ok.seen.map((m) => m.phase), ['Error', 'Error', 'Successful', 'Successful', 'Successful']);
    assert.equal(ok.completed[0]?.phase, 'Successful');
    assert.equal(ok.completed[0]!.message, 'm: 3/3 measurements successful (failed 0, inconclusive 0; 2 errors retried, not counted)');
  });

  it('with the defaults (count 1, consecutiveErrorLimit 4) a transient Error is retried after 10 s, as Argo does, not the verdict', async () => {
    const h = harness([metric({})], ['error', [0.95]]);
    h.run.start();
    await h.scheduler.advance(9_999);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Error']);
    assert.equal(h.completed.length, 0, 'one Error is no verdict');
    await h.scheduler.advance(1);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Error', 'Successful']);
    assert.deepEqual(h.provider.calls.map((c) => c.at - Date.UTC(2026, 0, 1)), [0, 10_000]);
    assert.equal(h.completed[0]?.phase, 'Successful');

    // Down for good: the fifth consecutive Error (> consecutiveErrorLimit 4) ends it, 40 s in.
    const down = harness([metric({})], ['error']);
    down.run.start();
    await down.scheduler.advance(10 * 60_000);
    assert.deepEqual(down.provider.calls.map((c) => c.at - Date.UTC(2026, 0, 1)), [0, 10_000, 20_000, 30_000, 40_000]);
    assert.equal(down.completed[0]?.phase, 'Error');
    assert.match(down.completed[0]!.message, /^m: 5 consecutive errors > consecutiveErrorLimit 4: m: scripted: connection refused$/);
    assert.equal(down.scheduler.pendingCount, 0);
  });

  it('resumes after a restart with recorded Errors not counted, retrying 10 s after the last one', async () => {
    const m = metric({});
    const first = harness([m], ['error']);
    first.run.start();
    await first.scheduler.advance(0);
    first.run.stop();
    assert.deepEqual(first.seen.map((x) => x.phase), ['Error']);

    const resumed = harness([m], [[0.95]], first.seen);
    resumed.run.start();
    await resumed.scheduler.advance(9_999);
    assert.equal(resumed.seen.length, 0, 'not before the retry interval');
    await resumed.scheduler.advance(1);
    assert.equal(resumed.seen[0]?.index, 1);
    assert.equal(resumed.completed[0]?.phase, 'Successful');
  });

  it('consecutiveErrorLimit -1 still ends a metric whose backend never answers, after MAX_MEASUREMENTS (10080) Errors', () => {
    const m = metric({ interval: '1s', count: 2, consecutiveErrorLimit: -1 });
    const error = (index: number): Measurement => ({ metric: 'm', index, phase: 'Error', startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:00.000Z', provider: 'builtin', queries: {}, value: null, thresholds: { minSamples: 1 }, message: 'm: down' });
    const errors = Array.from({ length: MAX_MEASUREMENTS - 1 }, (_, i) => error(i));
    assert.equal(assessMetric(m, errors).phase, 'Running');
    const last = assessMetric(m, [...errors, error(MAX_MEASUREMENTS - 1)]);
    assert.equal(last.phase, 'Error');
    assert.equal(last.message, `m: ${MAX_MEASUREMENTS} error measurements, the most one metric takes, before 2 without error: m: down`);
  });

  it('an infinite value can fail a measurement but never pass it', async () => {
    const judge = async (fields: Record<string, unknown>, values: number[], samples?: number) => {
      const script: Scripted[] = samples === undefined ? [values] : [values, [samples]];
      const h = harness([metric(fields)], script);
      h.run.start();
      await h.scheduler.advance(0);
      return h.seen[0]!;
    };
    const plusInf = await judge({}, [Infinity]);
    assert.equal(plusInf.phase, 'Inconclusive');
    assert.match(plusInf.message, /^m: result Infinity has an infinite value; it never counts as success \(successCondition "result\[0\] >= 0\.9" is true\)$/);
    const minusInf = await judge({ successCondition: undefined, failureCondition: 'result[0] > 0.01' }, [-Infinity]);
    assert.equal(minusInf.phase, 'Inconclusive');
    assert.equal((await judge({ successCondition: 'result[0] <= 0.01' }, [Infinity])).phase, 'Failed');
    assert.equal((await judge({ successCondition: 'all(result, {# >= 0.9})' }, [0.95, Infinity])).phase, 'Inconclusive');
    const infiniteSamples = await judge({ provider: { prometheus: { query: 'q', samplesQuery: 's' } } }, [0.95], Infinity);
    assert.equal(infiniteSamples.phase, 'Inconclusive');
    assert.match(infiniteSamples.message, /the sample count is Infinity/);
    assert.equal((await judge({}, [0.95])).phase, 'Successful');
  });

  it('SystemScheduler waits out delays longer than setTimeout can (~24.8 days) instead of firing at once', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
    const scheduler = new SystemScheduler();
    let fired = 0;
    const thirtyDays = 30 * 24 * 3_600_000;
    scheduler.schedule(thirtyDays, () => (fired += 1));
    t.mock.timers.tick(1000);
    assert.equal(fired, 0, 'fired after 1 s');
    t.mock.timers.tick(25 * 24 * 3_600_000);
    assert.equal(fired, 0, 'fired after 25 days');
    t.mock.timers.tick(thirtyDays - 25 * 24 * 3_600_000 - 1000);
    assert.equal(fired, 1);
    const cancel = scheduler.schedule(thirtyDays, () => (fired += 1));
    t.mock.timers.tick(26 * 24 * 3_600_000);
    cancel();
    t.mock.timers.tick(5 * 24 * 3_600_000);
    assert.equal(fired, 1, 'cancelled after re-arming');
  });

  it('succeeds early at consecutiveSuccessLimit, and fails when count ends without it', async () => {
    const early = harness([metric({ interval: '1m', count: 10, consecutiveSuccessLimit: 2, failureLimit: -1 })], [[0.5], [0.95], [0.96], [0.2]]);
    early.run.start();
    await early.scheduler.advance(60 * 60_000);
    assert.deepEqual(early.seen.map((m) => m.phase), ['Failed', 'Successful', 'Successful']);
    assert.equal(early.completed[0]?.phase, 'Successful');

    const never = harness([metric({ interval: '1m', count: 3, consecutiveSuccessLimit: 2, failureLimit: -1 })], [[0.95], [0.5], [0.95]]);
    never.run.start();
    await never.scheduler.advance(60 * 60_000);
    assert.equal(never.completed[0]?.phase, 'Failed');
    assert.match(never.completed[0]!.message, /3 measurements without 2 consecutive successes/);
  });

  it('tolerates inconclusiveLimit inconclusive measurements', async () => {
    const h = harness([metric({ interval: '1m', count: 3, inconclusiveLimit: 1 })], [[], [0.95], [0.95]]);
    h.run.start();
    await h.scheduler.advance(10 * 60_000);
    assert.deepEqual(h.seen.map((m) => m.phase), ['Inconclusive', 'Successful', 'Successful']);
    assert.equal(h.completed[0]?.phase, 'Successful');
  });

  it('lets other metrics finish after an Inconclusive one, and a later failure wins', async () => {
    const a = metric({ name: 'a', interval: '1m', count: 1 });
    const b = { ...metric({ name: 'b', interval: '1m', count: 2 }), source: { ...metric({}).source, query: 'b' } } as AnalysisMetric;
    const provider: Scripted = (query, context) => {
      const minute = (context.now.getTime() - Date.UTC(2026, 0, 1)) / 60_000;
      if (query.startsWith('q')) return { resultType: 'vector', samples: [] };
      return { resultType: 'vector', samples: [{ labels: {}, value: minute === 0 ? 0.95 : 0.1 }] };
    };
    const h = harness([a, b], [provider]);
    h.run.start();
    await h.scheduler.advance(0);
    assert.equal(h.completed.length, 0, 'b still running');
    await h.scheduler.advance(60_000);
    assert.equal(h.completed[0]?.phase, 'Failed');
  });

  it('resumes from recorded measurements: counts continue and timing follows the last one', async () => {
    const m = metric({ interval: '1m', count: 3 });
    const first = harness([m], [[0.95]]);
    first.run.start();
    await first.scheduler.advance(60_000);
    assert.equal(first.seen.length, 2);
    first.run.stop();

    const resumed = harness([m], [[0.95]], first.seen);
    await resumed.scheduler.advance(150_000); // the restarted process starts after the next one was due
    resumed.run.start();
    await resumed.scheduler.advance(0);
    assert.equal(resumed.seen.length, 1, 'one measurement left; it was already due');
    assert.equal(resumed.seen[0]!.index, 2);
    assert.equal(resumed.completed[0]?.phase, 'Successful');
  });

  it('assessMetric is Running until count', () => {
    const m = metric({ interval: '1m', count: 2 });
    assert.equal(assessMetric(m, []).phase, 'Running');
  });
});
