import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { RolloutSpecError, validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { startRolloutServer } from './helpers/rollout-server.ts';

/** Analysis queries a provider refuses whatever the data are a refused start (400), not a rollout failed at its first measurement. */

const RANGE_IN_AGGREGATION = 'avg(fleetprune_device_accuracy_ratio{model="{{args.model}}",role="candidate"}[5m])';

/** A spec whose step 1 measures `query` on `provider`. */
const specWith = (provider: 'prometheus' | 'builtin', query: string) => `model: wine
candidateVersion: "2"
steps:
  - setWeight: 50
  - analysis:
      metrics:
        - name: acc
          successCondition: result[0] >= 0.9
          provider:
            ${provider}:
              query: '${query}'
  - setWeight: 100
`;

/** A Prometheus stand-in answering as Prometheus does: bad_data for a range vector in an aggregation, else an empty vector. */
async function fakePrometheus(t: TestContext): Promise<{ url: string; queries: string[] }> {
  const queries: string[] = [];
  const server: Server = createServer(async (req, res) => {
    // POST /api/v1/query with a form body, as the provider sends it.
    let form = '';
    for await (const chunk of req) form += chunk;
    const query = new URLSearchParams(form).get('query') ?? '';
    queries.push(query);
    res.setHeader('content-type', 'application/json');
    if (/^avg\(.*\[5m\]\)$/.test(query)) {
      res.statusCode = 400;
      res.end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: '1:5: parse error: expected type instant vector in aggregation expression, got range vector' }));
      return;
    }
    // A bare range selector is a range vector, a string literal a string: answers, not errors, that no condition reads.
    if (/\[5m\]$/.test(query)) return void res.end(JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [] } }));
    if (/^".*"$/.test(query)) return void res.end(JSON.stringify({ status: 'success', data: { resultType: 'string', result: [1, query.slice(1, -1)] } }));
    res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [] } }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, queries };
}

const start = async (s: NonNullable<Awaited<ReturnType<typeof startRolloutServer>>>, yaml: string) => {
  const response = await s.request('POST', '/api/rollouts', { body: yaml, contentType: 'application/yaml' });
  return { status: response.status, body: (await response.json()) as { id?: string; warnings?: string[]; error?: { code: string; message: string } } };
};

test('rollout validate and start refuse a builtin query that only evaluation finds wrong (a range selector in an aggregation)', () => {
  assert.throws(
    () => validateRolloutSpec({ model: 'wine', candidateVersion: '2', steps: [{ analysis: { metrics: [{ name: 'acc', successCondition: 'result[0] >= 0.9', provider: { builtin: { query: RANGE_IN_AGGREGATION } } }] } }] }),
    (error: unknown) => error instanceof RolloutSpecError && /steps\[0\]\.analysis\.metrics\[0\]\.provider\.builtin\.query: a range selector \(.*\[5m\]\) must be the argument of a range function/.test(error.message),
  );
});

test('on Prometheus: a query it refuses as bad_data refuses the start, naming the metric and its error; a good one starts without a warning', async (t) => {
  const prometheus = await fakePrometheus(t);
  const s = await startRolloutServer(t, { config: { prometheusUrl: prometheus.url } });
  if (!s) return;
  const refused = await start(s, specWith('prometheus', RANGE_IN_AGGREGATION));
  assert.equal(refused.status, 400);
  assert.equal(
    refused.body.error?.message,
    'steps[1].analysis metric "acc": query: Prometheus refuses it: 1:5: parse error: expected type instant vector in aggregation expression, got range vector',
  );
  assert.ok(prometheus.queries.includes('avg(fleetprune_device_accuracy_ratio{model="wine",role="candidate"}[5m])'), 'sent with its arguments in place');
  assert.deepEqual((await (await s.request('GET', '/api/rollouts')).json() as { rollouts: unknown[] }).rollouts, [], 'nothing stored');

  const good = await start(s, specWith('prometheus', 'avg(fleetprune_device_accuracy_ratio{model="{{args.model}}",role="candidate"})'));
  assert.equal(good.status, 201, JSON.stringify(good.body));
  assert.deepEqual(good.body.warnings, []);
});

test('on Prometheus: a query it answers with a range vector or a string refuses the start (every measurement would fail), naming the metric', async (t) => {
  const prometheus = await fakePrometheus(t);
  const s = await startRolloutServer(t, { config: { prometheusUrl: prometheus.url } });
  if (!s) return;
  const range = await start(s, specWith('prometheus', 'fleetprune_device_accuracy_ratio{model="{{args.model}}"}[5m]'));
  assert.equal(range.status, 400);
  assert.equal(range.body.error?.message, 'steps[1].analysis metric "acc": query: the query returns a range vector; wrap it in a function such as rate() or avg_over_time()');
  const text = await start(s, specWith('prometheus', '"abc"'));
  assert.equal(text.status, 400);
  assert.equal(text.body.error?.message, 'steps[1].analysis metric "acc": query: the query returns a string; a condition reads numbers (a vector or a scalar)');
  assert.deepEqual((await (await s.request('GET', '/api/rollouts')).json() as { rollouts: unknown[] }).rollouts, [], 'nothing stored');
});

test('a Prometheus that does not answer at the start is a warning, and the rollout starts', async (t) => {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const s = await startRolloutServer(t, { config: { prometheusUrl: `http://127.0.0.1:${port}` } });
  if (!s) return;
  const started = await start(s, specWith('prometheus', 'avg(fleetprune_device_accuracy_ratio{model="{{args.model}}"})'));
  assert.equal(started.status, 201, JSON.stringify(started.body));
  assert.equal(started.body.warnings?.length, 1);
  assert.match(started.body.warnings![0]!, /^the metric provider did not answer a check before the start \(prometheus: cannot reach .*ECONNREFUSED.*\): the analysis measurements on it fail until it does/);
});

test('without --prometheus-url, a prometheus metric runs on the builtin provider: one it cannot run refuses the start; one it can starts with a warning saying so', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const refused = await start(s, specWith('prometheus', 'topk(1, fleetprune_device_accuracy_ratio)'));
  assert.equal(refused.status, 400);
  assert.match(refused.body.error!.message, /^steps\[1\]\.analysis metric "acc": query: the builtin provider cannot run it: the builtin provider does not support "topk"/);
  const started = await start(s, specWith('prometheus', 'avg(fleetprune_device_accuracy_ratio{model="{{args.model}}"})'));
  assert.equal(started.status, 201, JSON.stringify(started.body));
  assert.deepEqual(started.body.warnings, [
    `steps[1].analysis metric "acc" names the prometheus provider, and this server has no --prometheus-url: it runs on the builtin provider, over the server's own series`,
  ]);
});
