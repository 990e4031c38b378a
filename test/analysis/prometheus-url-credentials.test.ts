import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { MetricProviderError } from '../../server/metricproviders/metric-provider.ts';
import { PrometheusProvider } from '../../server/metricproviders/prometheus-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { freePort } from '../helpers/engines.ts';
import { misbehavingServer, vectorAnswer } from '../helpers/misbehaving-http.ts';
import { ScriptedProvider } from './scripted-provider.ts';

/**
 * --prometheus-url with credentials (https://user:password@prometheus.example, as for a
 * Prometheus behind basic auth): they are sent as basic auth, and no message, measurement or
 * analysis result quotes them.
 */
const SECRET = 's3cr%40t-Pa55';

function measure(url: string) {
  const spec = validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'm', provider: { prometheus: { query: 'up' } }, successCondition: 'result[0] == 1' }] } }] });
  const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
  const providers = new MetricProviderResolver({ builtin: new ScriptedProvider(['error'], 'builtin'), prometheus: new PrometheusProvider({ url, timeoutMs: 5000 }) });
  return takeMeasurement(metric, 0, providers, { model: 'wine', candidateVersion: '2', devices: ['d1'], args: {}, now: () => new Date() });
}

describe('credentials in the Prometheus URL', () => {
  it('are sent as basic auth, not refused by fetch with the password in the message', async () => {
    const authorizations: (string | undefined)[] = [];
    const server = await misbehavingServer((req, res) => {
      authorizations.push(req.headers.authorization);
      res.end(vectorAnswer('1'));
    });
    try {
      const measurement = await measure(server.url.replace('http://', `http://fleet:${SECRET}@`));
      assert.equal(measurement.phase, 'Successful', measurement.message);
      assert.deepEqual(authorizations, [`Basic ${Buffer.from('fleet:s3cr@t-Pa55').toString('base64')}`]);
    } finally {
      await server.close();
    }
  });

  it('an explicit Authorization header wins over the URL\'s credentials', async () => {
    const authorizations: (string | undefined)[] = [];
    const server = await misbehavingServer((req, res) => {
      authorizations.push(req.headers.authorization);
      res.end(vectorAnswer('1'));
    });
    try {
      await new PrometheusProvider({ url: server.url.replace('http://', `http://fleet:${SECRET}@`), headers: { Authorization: 'Bearer t' } }).query('up', { now: new Date() });
      assert.deepEqual(authorizations, ['Bearer t']);
    } finally {
      await server.close();
    }
  });

  it('appear in no error: unreachable, redirected, or not a URL', async () => {
    const closed = await freePort();
    const unreachable = await measure(`http://fleet:${SECRET}@127.0.0.1:${closed}`);
    assert.equal(unreachable.phase, 'Error');
    assert.match(unreachable.message, /^m: prometheus: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/);

    const server = await misbehavingServer((_req, res) => {
      res.statusCode = 307;
      res.setHeader('location', `http://fleet:${SECRET}@prometheus.example/api/v1/query`);
      res.end();
    });
    try {
      const redirected = await measure(server.url.replace('http://', `http://fleet:${SECRET}@`));
      assert.equal(redirected.phase, 'Error');
      assert.match(redirected.message, /^m: prometheus: HTTP 307 redirect to http:\/\/\*\*\*@prometheus\.example\/api\/v1\/query; set --prometheus-url/);
    } finally {
      await server.close();
    }

    assert.throws(() => new PrometheusProvider({ url: `http://fleet:${SECRET}@[::1` }), (error: unknown) => {
      assert.ok(error instanceof TypeError && !(error instanceof MetricProviderError));
      assert.equal(error.message, '--prometheus-url: "http://***@[::1" is not a URL');
      return true;
    });
  });
});
