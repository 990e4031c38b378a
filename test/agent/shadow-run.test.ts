import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { createAgentMetrics } from '../../agent/agent-metrics.ts';
import { createOnnxSession } from '../../agent/onnx-session.ts';
import { createPredictApp, type ServingStats } from '../../agent/predict-api.ts';
import type { ServingModel } from '../../agent/serving-model.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { exportOnnx } from '../../shared/artifact/onnx-export.ts';
import { CLASSIFIER_FEATURES, randomNetwork } from '../artifact/fixtures.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';

const manifest = { name: 'sensor-classifier', task: 'classification', features: CLASSIFIER_FEATURES, labels: ['a', 'b', 'c'] } as unknown as Manifest;

async function serving(seed: number, version: string): Promise<ServingModel> {
  const network = randomNetwork(seed, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);
  const session = await createOnnxSession(exportOnnx(network));
  return { ref: { model: manifest.name, version, sha256: `sha-${version}` }, manifest, lease: { session, release: () => session.release() } };
}

/**
 * The device API with an active model and a candidate shadow-run on every request. `between`
 * runs after the answer is decided and before the shadow run: where the agent's work queue can
 * replace, drop or promote the candidate (and release its session) while requests are served.
 */
async function api(t: TestContext, between: (slots: { candidate: ServingModel | undefined }) => void) {
  const active = await serving(1, '1');
  const slots: { candidate: ServingModel | undefined } = { candidate: await serving(2, '2') };
  const stats: ServingStats = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };
  const metrics = createAgentMetrics();
  const app = createPredictApp({
    stats,
    active: () => active,
    candidate: () => slots.candidate,
    shadowFraction: 1,
    metrics,
    logger: pino({ level: 'silent' }),
    health: () => ({}),
    random: () => {
      between(slots);
      return 0;
    },
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await active.lease.release();
    await slots.candidate?.lease.release();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const predict = async () => {
    const response = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows: [[1, 2, 3, 4, 5, 6, 7]] }) });
    return { status: response.status, json: (await response.json()) as { version: string } };
  };
  return { stats, metrics, predict, slots };
}

test('a shadow run whose candidate was dropped after the answer is not run: no error counted against it, no series left for it', async (t) => {
  let shadowScheduled = false;
  const { stats, metrics, predict } = await api(t, (slots) => {
    // The agent's drop: the slot is emptied, the shadow counters reset, the old session released.
    const dropped = slots.candidate!;
    slots.candidate = undefined;
    for (const counter of [metrics.shadowRuns, metrics.shadowAgreements, metrics.shadowErrors]) counter.reset();
    void dropped.lease.release();
    shadowScheduled = true;
  });
  const answer = await predict();
  assert.deepEqual([answer.status, answer.json.version], [200, '1']);
  assert.ok(shadowScheduled);
  // The shadow run would come in the turn after the answer: give it a few turns.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual({ ...stats }, { predictions: 1, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 });
  assert.doesNotMatch(await metrics.registry.metrics(), /fleetprune_agent_shadow_(runs|agreements|errors)_total\{version="2"\}/);
});

test('a shadow run whose candidate stays is run and counted by its version', async (t) => {
  const { stats, metrics, predict } = await api(t, () => {});
  assert.equal((await predict()).status, 200);
  await waitFor(() => stats.shadowRows === 1, 3000, 'the shadow run');
  assert.equal(stats.shadowErrors, 0);
  assert.match(await metrics.registry.metrics(), /fleetprune_agent_shadow_runs_total\{version="2"\} 1/);
});
