import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { createAgentMetrics } from '../../agent/agent-metrics.ts';
import { createPredictApp, type ServingStats } from '../../agent/predict-api.ts';
import type { ServingModel } from '../../agent/serving-model.ts';

/**
 * The agent's HTTP predict API on an ephemeral port, serving `active` and shadowing every request
 * on `candidate` (when given), closed after the test. `predict` posts rows and returns the status
 * and the JSON answer; `url` is the /v1/predict address, `stats` what the API counted.
 */
export async function predictApiServer(t: TestContext, active: ServingModel, candidate?: ServingModel) {
  const stats: ServingStats = { predictions: 0, errors: 0, shadowRows: 0, shadowAgreements: 0, shadowErrors: 0 };
  const app = createPredictApp({ stats, active: () => active, candidate: () => candidate, shadowFraction: 1, metrics: createAgentMetrics(), logger: pino({ level: 'silent' }), health: () => ({}), random: () => 0 });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/predict`;
  const predict = async (rows: number[][]) => {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rows }) });
    return { status: response.status, json: (await response.json()) as Record<string, any> };
  };
  return { stats, url, predict };
}
