import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';
import { ScriptedProvider } from './scripted-provider.ts';

/**
 * A Prometheus-API backend (a Thanos or Mimir query frontend) may answer "success" with a partial
 * response and say so only in `warnings`: "2 of 3 store gateways unavailable". The samples may
 * then lack series (devices, errors), so such an answer must never promote a rollout, and the
 * warning must show in the measurement.
 */
const PARTIAL = 'partial response: 2 of 3 store gateways unavailable (rpc error: code = Unavailable)';

/** Answers every query with one sample of `value(query)`, timed as asked, and the given annotations. */
async function annotatingBackend(value: (query: string) => string, annotations: { warnings?: unknown; infos?: unknown }) {
  return misbehavingServer((req: http.IncomingMessage, res: http.ServerResponse) => {
    let text = '';
    req.on('data', (chunk) => (text += String(chunk)));
    req.on('end', () => {
      const params = new URLSearchParams(text);
      const query = params.get('query') ?? '';
      const time = Number(params.get('time'));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: 'success', ...annotations, data: { resultType: 'vector', result: [{ metric: {}, value: [time, value(query)] }] } }));
    });
  });
}

const candidateErrors = (): AnalysisMetric => {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
  return (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
};

async function measure(url: string) {
  const providers = new MetricProviderResolver({ builtin: new ScriptedProvider(['error'], 'builtin'), prometheus: new PrometheusProvider({ url }) });
  return takeMeasurement(candidateErrors(), 0, providers, { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2'], args: { model: 'wine', candidateVersion: '2', cohort: 'd1|d2' }, now: () => new Date() });
}

describe('Prometheus warnings (partial responses)', () => {
  it('a partial answer never promotes: what would pass is Inconclusive, and the warning is in the message', async () => {
    // The error ratio query (a division) is 0.1%, well within the template's limit; the samples query 5000 rows.
    const backend = await annotatingBackend((query) => (query.includes(' / ') ? '0.001' : '5000'), { warnings: [PARTIAL] });
    try {
      const measurement = await measure(backend.url);
      assert.equal(measurement.phase, 'Inconclusive', measurement.message);
      assert.ok(measurement.message.includes(PARTIAL), `the warning is shown: ${measurement.message}`);
      assert.match(measurement.message, /partial answer: Inconclusive, not Successful/);
      assert.ok(measurement.message.split(PARTIAL).length === 2, `one warning, shown once for the two queries that both carried it: ${measurement.message}`);
    } finally {
      await backend.close();
    }
    // The same answer without warnings passes: the warning alone made the difference.
    const clean = await annotatingBackend((query) => (query.includes(' / ') ? '0.001' : '5000'), {});
    try {
      const measurement = await measure(clean.url);
      assert.equal(measurement.phase, 'Successful', measurement.message);
      assert.doesNotMatch(measurement.message, /warned/);
    } finally {
      await clean.close();
    }
  });

  it('a Failed verdict on a partial answer stays Failed, with the warning shown', async () => {
    // 50% of the candidate's rows failed: that fails it whatever data is missing.
    const backend = await annotatingBackend((query) => (query.includes(' / ') ? '0.5' : '5000'), { warnings: [PARTIAL] });
    try {
      const measurement = await measure(backend.url);
      assert.equal(measurement.phase, 'Failed', measurement.message);
      assert.ok(measurement.message.includes(PARTIAL), `the warning is shown: ${measurement.message}`);
      assert.doesNotMatch(measurement.message, /Inconclusive, not Successful/);
    } finally {
      await backend.close();
    }
  });

  it('a relative check on a partial answer is not Successful either', async () => {
    // Every device's candidate and baseline accuracy alike: within tolerance, but on a partial answer.
    const backend = await misbehavingServer((req, res) => {
      let text = '';
      req.on('data', (chunk) => (text += String(chunk)));
      req.on('end', () => {
        const time = Number(new URLSearchParams(text).get('time'));
        const result = ['d1', 'd2', 'd3', 'd4', 'd5'].map((device) => ({ metric: { device }, value: [time, '0.9'] }));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ status: 'success', warnings: [PARTIAL], data: { resultType: 'vector', result } }));
      });
    });
    try {
      const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'accuracy', relative: { metric: 'accuracy' } }] } }] });
      const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
      const providers = new MetricProviderResolver({ builtin: new PrometheusProvider({ url: backend.url }) });
      const measurement = await takeMeasurement(metric, 0, providers, { model: 'wine', candidateVersion: '2', devices: ['d1', 'd2', 'd3', 'd4', 'd5'], args: {}, now: () => new Date() });
      assert.equal(measurement.phase, 'Inconclusive', measurement.message);
      assert.ok(measurement.message.includes(PARTIAL), `the warning is shown: ${measurement.message}`);
      assert.match(measurement.message, /within tolerance/, 'the verdict it would have been is still told');
    } finally {
      await backend.close();
    }
  });

  it('the provider returns warnings and infos as bounded printable lines; an answer without them has none', async () => {
    const many = Array.from({ length: 8 }, (_, i) => `store ${i} unavailable`);
    const backend = await annotatingBackend(() => '1', { warnings: ['line\nbreak\u0000nul\u2028sep', 'x'.repeat(1000), 'line\nbreak\u0000nul\u2028sep', ...many], infos: ['PromQL info: metric might not be a counter'] });
    try {
      const result = await new PrometheusProvider({ url: backend.url }).query('up', { now: new Date() });
      assert.deepEqual(result.samples.map((s) => s.value), [1]);
      assert.equal(result.warnings?.[0], 'line break nul sep', 'one printable line');
      assert.equal(result.warnings?.[1], `${'x'.repeat(300)}…`, 'cut');
      assert.equal(result.warnings?.length, 5, `at most 5, deduplicated: ${JSON.stringify(result.warnings)}`);
      assert.equal(result.warnings?.[4], '6 more', 'of 10 distinct, 4 shown and 6 more');
      assert.deepEqual(result.infos, ['PromQL info: metric might not be a counter']);
    } finally {
      await backend.close();
    }
    const lone = await annotatingBackend(() => '1', { warnings: PARTIAL });
    try {
      const result = await new PrometheusProvider({ url: lone.url }).query('up', { now: new Date() });
      assert.deepEqual(result.warnings, [PARTIAL], 'a lone string is a warning too, never dropped');
    } finally {
      await lone.close();
    }
    const clean = await annotatingBackend(() => '1', { warnings: [], infos: null });
    try {
      const result = await new PrometheusProvider({ url: clean.url }).query('up', { now: new Date() });
      assert.equal('warnings' in result, false, 'no warnings key without warnings');
      assert.equal('infos' in result, false, 'no infos key without infos');
    } finally {
      await clean.close();
    }
  });
});
