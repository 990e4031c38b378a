import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { AnalysisRun } from '../../server/analysis/analysis-run.ts';
import type { RunAssessment } from '../../server/analysis/analysis-assessment.ts';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { SystemScheduler } from '../../server/analysis/scheduler.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { ScriptedProvider } from './scripted-provider.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';

/**
 * A Prometheus stand-in (a real HTTP server on an ephemeral port) answering what a broken
 * backend or a proxy in front of Prometheus answers, through the analysis as a rollout runs it:
 * none of it may pass the analysis, and the reason is one line.
 */
function metricOf(fields: Record<string, unknown>): AnalysisMetric {
  // consecutiveErrorLimit 0: an Error is not retried (after 10 s of real time) but the verdict, at once.
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'm', consecutiveErrorLimit: 0, ...fields }] } }] });
  return (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
}

/** One analysis run of `metric` on a Prometheus provider at `url`, to its end (the rollout's verdict). */
async function analyse(metric: AnalysisMetric, url: string, devices: readonly string[] = ['d1']): Promise<RunAssessment> {
  const run = new AnalysisRun({
    metrics: [metric],
    providers: new MetricProviderResolver({ builtin: new ScriptedProvider(['error'], 'builtin'), prometheus: new PrometheusProvider({ url, timeoutMs: 5000 }) }),
    scheduler: new SystemScheduler(),
    context: { model: 'wine', candidateVersion: '2', devices, args: { cohort: devices.join('|') } },
  });
  run.start();
  return run.done;
}

const vector = (result: unknown[]) => JSON.stringify({ status: 'success', data: { resultType: 'vector', result } });
const now = () => Date.now() / 1000;

async function withServer<T>(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void, body: (url: string) => Promise<T>): Promise<T> {
  const server = await misbehavingServer(handler);
  try {
    return await body(server.url);
  } finally {
    await server.close();
  }
}

async function requestBody(req: http.IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return new URLSearchParams(text).get('query') ?? '';
}

describe('analysis over a hostile Prometheus answer', () => {
  it('one series answered twice (a proxy merging HA replicas) is an Error, not two samples passing minSamples', async () => {
    const series = { metric: { __name__: 'up', device: 'd1' }, value: [now(), '1'] };
    const assessment = await withServer((_req, res) => res.end(vector([series, series])), (url) =>
      analyse(metricOf({ provider: { prometheus: { query: 'up' } }, minSamples: 2, successCondition: 'all(result, {# > 0.5})' }), url));
    assert.equal(assessment.phase, 'Error');
    assert.match(assessment.message, /^m: 1 consecutive errors > consecutiveErrorLimit 0: m: prometheus: malformed vector result: entries 0 and 1 have the same labels \{__name__="up",device="d1"\}/);
    assert.doesNotMatch(assessment.message, /\n/);
  });

  it('a sample whose timestamp is not a number of seconds is an Error, not a value', async () => {
    for (const timestamp of ['1767225600', null, 'yesterday']) {
      const assessment = await withServer((_req, res) => res.end(vector([{ metric: {}, value: [timestamp, '1'] }])), (url) =>
        analyse(metricOf({ provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] == 1' }), url));
      assert.equal(assessment.phase, 'Error', `timestamp ${JSON.stringify(timestamp)}: ${assessment.message}`);
      assert.match(assessment.message, /prometheus: malformed sample: its timestamp .* is not a number of seconds$/);
    }
  });

  it('an answer timed far from the time the query asked for (a cache replaying an old one) is an Error, not evidence', async () => {
    // The provider asks for `time`; Prometheus answers at exactly that time. An hour-old answer, or one from the future, was not evaluated for this query.
    for (const [offset, side] of [[-3600, 'before'], [3600, 'after']] as const) {
      const assessment = await withServer((_req, res) => res.end(vector([{ metric: {}, value: [now() + offset, '1'] }])), (url) =>
        analyse(metricOf({ provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] == 1' }), url));
      assert.equal(assessment.phase, 'Error', `${offset} s: ${assessment.message}`);
      assert.match(assessment.message, new RegExp(`prometheus: stale answer: a sample is timed 3600 s ${side} the time the query asked for \\(a cache between the server and Prometheus\\?\\)$`));
    }
    // The time asked for, echoed (to the millisecond, as Prometheus does), passes.
    const echoed = await withServer(async (req, res) => {
      let text = '';
      for await (const chunk of req) text += String(chunk);
      res.end(vector([{ metric: {}, value: [Number(new URLSearchParams(text).get('time')), '1'] }]));
    }, (url) => analyse(metricOf({ provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] == 1' }), url));
    assert.equal(echoed.phase, 'Successful', echoed.message);
  });

  it('a relative check counts only the rollout\'s devices, however many the backend answers for', async () => {
    // The rollout has one device; the backend ignores the device matcher and answers for five,
    // all looking fine: minSamples 4 must not be met by devices the rollout does not have.
    const devices = ['d1', 'd2', 'd3', 'd4', 'd5'];
    const assessment = await withServer(async (req, res) => {
      const query = await requestBody(req);
      const value = query.includes('role="candidate"') ? '0.96' : '0.95';
      res.end(vector(devices.map((device) => ({ metric: { device }, value: [now(), value] }))));
    }, (url) => analyse(metricOf({ relative: { metric: 'accuracy' }, minSamples: 4 }), url, ['d1']));
    assert.equal(assessment.phase, 'Inconclusive', assessment.message);
    assert.match(assessment.message, /too few samples: 1 device with both candidate and baseline accuracy reports \(1 candidate, 1 baseline\) < minSamples 4$/);
  });

  it('an error answer with Unicode line breaks or half a surrogate pair becomes one well-formed line', async () => {
    // JSON escapes: NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR, a lone high and a lone low surrogate.
    const answer = '{"status":"error","errorType":"bad_data\\ud800","error":"parse error:\\u0085line 2\\u2028line 3\\u2029end \\udc00"}';
    const assessment = await withServer((_req, res) => res.end(answer), (url) =>
      analyse(metricOf({ provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] == 1' }), url));
    assert.equal(assessment.phase, 'Error');
    assert.match(assessment.message, /m: prometheus: bad_data\uFFFD: parse error: line 2 line 3 end \uFFFD$/);
    assert.doesNotMatch(assessment.message, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/, 'no unpaired surrogate');
  });

  it('a label named __proto__ is kept as a label (two series differing only in it are two series)', async () => {
    const answer = '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__proto__":"a"},"value":[1,"1"]},{"metric":{"__proto__":"b"},"value":[1,"2"]}]}}';
    const result = await withServer((_req, res) => res.end(answer), (url) => new PrometheusProvider({ url }).query('up', { now: new Date(1000) }));
    assert.deepEqual(result.samples.map((sample) => [Object.hasOwn(sample.labels, '__proto__'), sample.labels['__proto__'], sample.value]), [[true, 'a', 1], [true, 'b', 2]]);
    assert.ok(result.samples.every((sample) => Object.getPrototypeOf(sample.labels) === Object.prototype), 'labels keep an ordinary prototype');
  });
});
