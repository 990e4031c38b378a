import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { PROTOCOL_METRICS } from '../../shared/metrics/agent-names.ts';
import { SERVER_METRICS } from '../../shared/metrics/names.ts';
import { cuttableProxy, type CuttableProxy } from '../helpers/cuttable-proxy.ts';
import { engineMissing } from '../helpers/engines.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { recordingLogger } from '../helpers/recording-logger.ts';
import { runCli } from './helpers/run-cli.ts';
import { postgresUrl } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';
import type { Logger } from '../../shared/util/log.ts';

/** A test server on PostgreSQL, reached through a proxy the test can cut. Null when PostgreSQL is missing. */
async function serverThroughProxy(t: TestContext, log?: Logger): Promise<{ server: TestServer; proxy: CuttableProxy } | null> {
  const url = await postgresUrl();
  if (!url) {
    engineMissing(t, 'PostgreSQL', 'nothing answers on 127.0.0.1:5432');
    return null;
  }
  const target = new URL(url);
  const proxy = await cuttableProxy(t, { host: target.hostname, port: Number(target.port || 5432) });
  const proxied = new URL(url);
  proxied.port = String(proxy.port);
  const server = (await startTestServer(t, { engine: 'postgres', config: { databaseUrl: proxied.toString() }, ...(log ? { start: { log } } : {}) }))!;
  return { server, proxy };
}

/** /metrics: its status, and each unlabelled sample's value (absent: no sample). */
async function scrape(server: TestServer): Promise<{ status: number; value: (name: string) => number | undefined }> {
  const response = await fetch(`${server.baseUrl}/metrics`);
  const text = await response.text();
  return {
    status: response.status,
    value: (name) => {
      const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return match ? Number(match[1]) : undefined;
    },
  };
}

/**
 * A database outage as the server sees it (its PostgreSQL link cut through a proxy): /metrics
 * still answers, so Prometheus does not take the server for down and keeps every other series
 * (the rollouts' among them); the store-backed gauges keep their last values and
 * fleetprune_store_up says the store is gone, then back.
 */
test('/metrics answers while the database is unreachable: fleetprune_store_up 0, the store gauges keep their last values; /readyz says the store is unavailable, /healthz that the process runs', async (t) => {
  const started = await serverThroughProxy(t);
  if (!started) return;
  const { server, proxy } = started;
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-1', labels: {} } });
  assert.equal(enrolled.status, 201, await enrolled.text());

  const before = await scrape(server);
  assert.equal(before.status, 200, '/metrics with the database up');
  assert.equal(before.value(PROTOCOL_METRICS.devices), 1, 'one device enrolled');
  assert.equal(before.value(SERVER_METRICS.registryModels), 0, 'no model registered');

  const ready = async (query = '') => {
    const response = await fetch(`${server.baseUrl}/readyz${query}`);
    return [response.status, await response.json()] as const;
  };
  assert.deepEqual(await ready(), [200, { status: 'ready', role: 'leader' }]);
  assert.deepEqual(await ready('?role=leader'), [200, { status: 'ready', role: 'leader' }]);
  assert.deepEqual(await ready('?role=follower'), [400, { error: { code: 'bad_request', message: 'role: must be "leader" (or left out), not "follower"' } }]);

  proxy.cut();
  const during = await scrape(server);
  assert.equal(during.status, 200, '/metrics with the database unreachable');
  // The process is alive (a restart would not bring the database back); it is not ready.
  assert.equal((await fetch(`${server.baseUrl}/healthz`)).status, 200);
  assert.deepEqual(await ready(), [503, { status: 'store-unavailable', message: 'the database does not answer' }]);
  assert.deepEqual(await ready('?role=leader'), [503, { status: 'store-unavailable', message: 'the database does not answer' }]);
  assert.equal(before.value(SERVER_METRICS.storeUp), 1, 'the store was up');
  assert.equal(during.value(SERVER_METRICS.storeUp), 0, 'fleetprune_store_up says the store is gone');
  assert.equal(during.value(PROTOCOL_METRICS.devices), 1, 'the device count keeps its last value');
  assert.equal(during.value(PROTOCOL_METRICS.devicesOnline), 0, 'the online count keeps its last value');
  assert.equal(during.value(SERVER_METRICS.registryModels), 0, 'the model count keeps its last value');
  assert.equal(during.value(SERVER_METRICS.jobsRunning), 0, 'the series that do not read the store are there');
  assert.equal((await scrape(server)).status, 200, 'and again');

  proxy.restore();
  await waitFor(async () => (await scrape(server)).value(SERVER_METRICS.storeUp) === 1, 10_000, 'fleetprune_store_up 1 once the database answers again');
  await waitFor(async () => (await ready())[0] === 200, 10_000, 'ready again once the database answers');
  const second = await server.request('POST', '/api/devices', { json: { id: 'dev-2', labels: {} } });
  assert.equal(second.status, 201, await second.text());
  assert.equal((await scrape(server)).value(PROTOCOL_METRICS.devices), 2, 'the device count is read again');
});

test('/metrics answers while the database accepts connections but does not answer: the store reads time out', async (t) => {
  const started = await serverThroughProxy(t);
  if (!started) return;
  const { server, proxy } = started;
  const before = await scrape(server);
  assert.equal(before.value(SERVER_METRICS.storeUp), 1, 'the store is up');
  proxy.stall();
  const during = await scrape(server);
  assert.equal(during.status, 200, '/metrics with the database silent');
  assert.equal(during.value(SERVER_METRICS.storeUp), 0, 'fleetprune_store_up says the store does not answer');
  assert.equal(during.value(PROTOCOL_METRICS.devices), 0, 'the device count keeps its last value');
  proxy.restore();
  await waitFor(async () => (await scrape(server)).value(SERVER_METRICS.storeUp) === 1, 15_000, 'fleetprune_store_up 1 once the database answers again');
});

test('REST and gRPC answer 503 / UNAVAILABLE saying the database does not answer while it is unreachable, each logged in one line without a stack; the election says so once', async (t) => {
  const { logger, lines } = recordingLogger();
  const started = await serverThroughProxy(t, logger);
  if (!started) return;
  const { server, proxy } = started;
  proxy.cut();
  const refusal = /^the server's database does not answer \([^)]+\), so the request was not completed; try again shortly$/;
  for (const [method, path, json] of [['GET', '/api/rollouts'], ['GET', '/api/rollouts/leader'], ['POST', '/api/devices', { id: 'dev-down', labels: {} }]] as const) {
    const response = await server.request(method, path, json ? { json } : {});
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.deepEqual([response.status, body.error.code], [503, 'store_unavailable'], `${method} ${path}: ${JSON.stringify(body)}`);
    assert.match(body.error.message, refusal, `${method} ${path}`);
  }
  // The CLI (gRPC): the server answered, its database did not; not "cannot reach the server".
  const listed = await runCli(['rollout', 'list', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(listed.code, 5, listed.stderr);
  assert.match(listed.stderr, /^fleetprune: the server at 127\.0\.0\.1:\d+ answered: the server's database does not answer \([^)]+\), so the request was not completed; try again shortly\n$/);

  // Logged as refusals, one line each with the reason as text; nothing as a failure of the server.
  const refused = lines.filter((line) => /refused: the database does not answer$/.test(line.msg));
  assert.ok(refused.length >= 4, `REST and gRPC refusals logged: ${refused.length}`);
  assert.ok(refused.every((line) => line.level === 40 && typeof line.err === 'string'), JSON.stringify(refused[0]));
  assert.deepEqual(lines.filter((line) => line.msg === 'request failed' || line.msg === 'gRPC call failed'), []);
  // The election (tried every 2 s) says once that it cannot reach PostgreSQL, without a stack, not at every try.
  const election = () => lines.filter((line) => String(line.msg).startsWith('rollout leader election: cannot reach PostgreSQL'));
  await waitFor(async () => election().length > 0, 15_000, 'the election says it cannot reach PostgreSQL');
  await new Promise((resolve) => setTimeout(resolve, 4_500));
  assert.equal(election().length, 1, JSON.stringify(election()));
  assert.equal(typeof election()[0]!.err, 'string');

  proxy.restore();
  await waitFor(async () => (await server.request('GET', '/api/devices')).status === 200, 15_000, 'requests are served again once the database answers');
  const devices = (await (await server.request('GET', '/api/devices')).json()) as { devices: { id: string }[] };
  assert.deepEqual(devices.devices, [], 'the refused enrolment stored nothing');
  await waitFor(async () => lines.some((line) => line.msg === 'rollout leader election: PostgreSQL answers again'), 15_000, 'the election says PostgreSQL answers again');
});
