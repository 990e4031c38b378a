import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { createAgentMetrics } from '../../agent/agent-metrics.ts';
import { MAX_PREDICT_BODY_BYTES, createPredictApp } from '../../agent/predict-api.ts';

/** The device API with no model: a body refused while it is read never reaches the model. */
async function deviceApi(t: TestContext): Promise<string> {
  const app = createPredictApp({
    stats: { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 },
    active: () => undefined,
    candidate: () => undefined,
    shadowFraction: 0,
    metrics: createAgentMetrics(),
    logger: pino({ level: 'silent' }),
    health: () => ({}),
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/predict`;
}

async function post(url: string, body: Uint8Array<ArrayBuffer>, encoding: string) {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body });
  return { status: response.status, error: ((await response.json()) as { error: string }).error };
}

test('a compressed /v1/predict body that does not decode is a 400 naming the encoding, not zlib\'s bare message', async (t) => {
  const url = await deviceApi(t);
  const answer = await post(url, new TextEncoder().encode('{"rows": [[1, 2, 3]]}'), 'gzip');
  assert.equal(answer.status, 400);
  assert.match(answer.error, /^the body is not valid gzip data \(/);
  const deflate = await post(url, new TextEncoder().encode('xx'), 'deflate');
  assert.equal(deflate.status, 400);
  assert.match(deflate.error, /^the body is not valid deflate data \(/);
});

test('a compressed /v1/predict body inflating past 1 MiB is the 413 a body sent that large gets', async (t) => {
  const url = await deviceApi(t);
  const bomb = new Uint8Array(gzipSync(Buffer.from(JSON.stringify({ rows: [[1, 2, 3]], pad: 'x'.repeat(2 * MAX_PREDICT_BODY_BYTES) }))));
  assert.ok(bomb.length < MAX_PREDICT_BODY_BYTES);
  assert.deepEqual(await post(url, bomb, 'gzip'), { status: 413, error: `the body is larger than the ${MAX_PREDICT_BODY_BYTES}-byte limit` });
});
