import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { countRefusal, createAgentMetrics } from '../../agent/agent-metrics.ts';
import { createDeviceHttpServer, DEVICE_HTTP_LIMITS } from '../../agent/device-http-server.ts';
import { createPredictApp } from '../../agent/predict-api.ts';

/** The device API (no model yet) behind createDeviceHttpServer, with a request limit of `requestTimeoutMs`. */
async function deviceApi(t: TestContext, requestTimeoutMs = DEVICE_HTTP_LIMITS.requestTimeoutMs, headersTimeoutMs = requestTimeoutMs, metrics = createAgentMetrics()): Promise<number> {
  const stats = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };
  const app = createPredictApp({ stats, active: () => undefined, candidate: () => undefined, shadowFraction: 0, metrics, logger: pino({ level: 'silent' }), health: () => ({}) });
  const server = createDeviceHttpServer(app, { headersTimeoutMs, requestTimeoutMs, checkIntervalMs: 100 }, (status, path) => countRefusal(metrics, status, path));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

/** Writes `bytes` on a new connection and collects what comes back until the server closes it; `elapsedMs` to the close. */
function exchange(port: number, bytes: string): Promise<{ answer: string; elapsedMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let answer = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.setEncoding('utf8').on('data', (chunk) => (answer += chunk));
    socket.on('error', reject).on('close', () => resolve({ answer, elapsedMs: Date.now() - started }));
  });
}

const jsonError = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: string };

test('a request whose body stalls (slowloris) is answered 408 and its connection closed once the request limit runs out', { timeout: 20_000 }, async (t) => {
  const port = await deviceApi(t, 500);
  const { answer, elapsedMs } = await exchange(port, 'POST /v1/predict HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"rows":');
  assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(answer, /\r\nContent-Type: application\/json; charset=utf-8\r\n/);
  assert.deepEqual(jsonError(answer), { error: 'the request did not arrive in 0.5 s' });
  // Closed by the server after its limit (checked every 100 ms here), not left open for Node's 300 s.
  assert.ok(elapsedMs >= 400 && elapsedMs < 10_000, `closed after ${elapsedMs} ms`);
});

test('a request whose headers stall is answered 408 naming the headers limit, not the request limit', { timeout: 20_000 }, async (t) => {
  const port = await deviceApi(t, 5_000, 500);
  const { answer, elapsedMs } = await exchange(port, 'POST /v1/predict HTTP/1.1\r\nHost: device\r\nContent-Ty');
  assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.deepEqual(jsonError(answer), { error: "the request's headers did not arrive in 0.5 s" });
  assert.ok(elapsedMs >= 400 && elapsedMs < 4_000, `closed after ${elapsedMs} ms`);
});

test("requests Node refuses before the API sees them get the API's JSON error, not a bare status line", { timeout: 20_000 }, async (t) => {
  const port = await deviceApi(t);
  const malformed = await exchange(port, 'NOT AN HTTP REQUEST\r\n\r\n');
  assert.match(malformed.answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(jsonError(malformed.answer).error, /^malformed HTTP request \(HPE_[A-Z_]+\)$/);
  const huge = await exchange(port, `GET /healthz HTTP/1.1\r\nHost: device\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.match(huge.answer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.deepEqual(jsonError(huge.answer), { error: "the request's headers are larger than the server takes" });
  // A good request on the same server is answered by the API itself.
  const good = await exchange(port, 'GET /healthz HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n');
  assert.match(good.answer, /^HTTP\/1\.1 200 OK\r\n/);
});

test('the refusals count in the metrics by status; a /v1/predict whose body stalled also counts as a predict request', { timeout: 20_000 }, async (t) => {
  const metrics = createAgentMetrics();
  const port = await deviceApi(t, 500, 500, metrics);
  await exchange(port, 'POST /v1/predict?x=1 HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"rows":');
  await exchange(port, 'GET /healthz HTTP/1.1\r\nHost: de');
  await exchange(port, 'NOT AN HTTP REQUEST\r\n\r\n');
  await exchange(port, `GET /healthz HTTP/1.1\r\nHost: device\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  const text = await metrics.registry.metrics();
  const count = (name: string, status: string) => Number(new RegExp(`^${name}\\{status="${status}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  assert.deepEqual(
    ['408', '400', '431'].map((status) => count('fleetprune_agent_http_refused_total', status)),
    [2, 1, 1],
  );
  assert.equal(count('fleetprune_agent_predict_requests_total', '408'), 1, 'only the predict request, not the stalled headers of /healthz');
  assert.equal(count('fleetprune_agent_predict_requests_total', '400'), 0);
});
