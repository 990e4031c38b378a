import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { AnalysisMetric } from '../../server/analysis/metric-definition.ts';
import { takeMeasurement } from '../../server/analysis/take-measurement.ts';
import { evaluatePromql } from '../../server/metricproviders/builtin/promql-evaluator.ts';
import { parsePromql } from '../../server/metricproviders/builtin/promql-parser.ts';
import { InMemorySeriesSet, type Series } from '../../server/metricproviders/builtin/series-set.ts';
import type { MetricProvider } from '../../server/metricproviders/metric-provider.ts';
import { MetricProviderResolver } from '../../server/metricproviders/provider-resolver.ts';
import { validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { AgentConfigSchema } from '../../shared/protocol/agent-config.ts';
import { telemetryTopic } from '../../shared/protocol/topics.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { killHard, spawnServer, type ServerProcess } from '../server/helpers/server-process.ts';

const DEVICE = 'rs-1';
const ref = (version: string) => ({ model: 'iris', version, sha256: version.repeat(64).slice(0, 64) });

/** The server's /metrics, as series with one point at `now` (what a Prometheus scrape would store). */
async function scrape(server: ServerProcess, now = Date.now()): Promise<Series[]> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  const series: Series[] = [];
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = { __name__: match[1]! };
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    series.push({ labels, points: [{ t: now, v: Number(match[3]) }] });
  }
  return series;
}

/** The device's candidate and active serving counters, as `predictions/errors` per role. */
async function counters(server: ServerProcess): Promise<Record<string, string>> {
  const series = await scrape(server);
  const value = (name: string, role: string) => series.find((entry) => entry.labels.__name__ === name && entry.labels.device === DEVICE && entry.labels.role === role)?.points[0]!.v;
  const result: Record<string, string> = {};
  for (const role of ['active', 'candidate']) {
    const predictions = value('fleetprune_device_predictions_total', role);
    if (predictions !== undefined) result[role] = `${predictions}/${value('fleetprune_device_prediction_errors_total', role)}`;
  }
  return result;
}

/** The built-in fleetprune-candidate-errors template, measured on the server's /metrics now. */
/** `fleet`: the server's fleet label (its signing key's id), which the rollout gives the template as {{args.fleet}}. */
async function candidateErrorsVerdict(server: ServerProcess, fleet: string): Promise<{ phase: string; value: number | undefined }> {
  const spec = validateRolloutSpec({ model: 'iris', candidateVersion: '2', steps: [{ analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }] } }] });
  const metric = (spec.steps[0] as { metrics: readonly AnalysisMetric[] }).metrics[0]!;
  const provider: MetricProvider = {
    name: 'builtin',
    query: async (query, context) => {
      const value = evaluatePromql(parsePromql(query), new InMemorySeriesSet(await scrape(server, context.now.getTime())), context.now.getTime());
      return value.type === 'scalar' ? { resultType: 'scalar', samples: [{ labels: {}, value: value.value }] } : { resultType: 'vector', samples: value.samples };
    },
  };
  const args = { model: 'iris', candidateVersion: '2', cohort: DEVICE, fleet };
  const measurement = await takeMeasurement(metric, 0, new MetricProviderResolver({ builtin: provider }), { model: 'iris', candidateVersion: '2', devices: [DEVICE], args, now: () => new Date() });
  return { phase: measurement.phase, value: measurement.value?.[0] };
}

test('a server killed and started again on the same data directory exports the serving counters it had, counts what devices served meanwhile once, and the candidate-errors template still fails the candidate', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-serving-restart-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  let server = await spawnServer(t, dataDir);
  const enrolled = await fetch(`${server.baseUrl}/api/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: DEVICE, labels: { cohort: 'pilot' } }),
  });
  assert.equal(enrolled.status, 201, await enrolled.clone().text());
  const config = AgentConfigSchema.parse(await enrolled.json());
  const fleet = keyId(createPublicKey(config.serverPublicKey));
  const connect = async (to: ServerProcess): Promise<MqttClient> => {
    const port = /\bmqtt=(\d+)/.exec(to.line)![1];
    const client = await connectClient(`mqtt://127.0.0.1:${port}`, { clientId: DEVICE, username: config.broker.username, password: config.broker.password });
    t.after(() => client.endAsync(true));
    return client;
  };
  // Cumulative since the agent started, as the agent sends them: active rows served and failed, candidate rows run in shadow and failed.
  const heartbeat = (uptimeSeconds: number, predictions: number, errors: number, shadowRows: number, shadowErrors: number) =>
    JSON.stringify({
      schema: 1, deviceId: DEVICE, sentAt: new Date().toISOString(), uptimeSeconds, cpuPercent: 1, rssBytes: 1e8, active: ref('1'), candidate: ref('2'), previous: null,
      serving: { predictions, errors, shadowRows, shadowAgreements: shadowRows, shadowErrors },
    });
  const send = async (device: MqttClient, payload: string, expected: Record<string, string>, what: string) => {
    await device.publishAsync(telemetryTopic(DEVICE), payload, { qos: 1 });
    let seen = {};
    await waitFor(async () => JSON.stringify((seen = await counters(server))) === JSON.stringify(expected), 5000, `${what}: ${JSON.stringify(expected)}`).catch((error: Error) => {
      throw new Error(`${error.message}; last seen ${JSON.stringify(seen)}`);
    });
  };

  let device = await connect(server);
  await send(device, heartbeat(10, 99, 1, 90, 10), { active: '100/1', candidate: '100/10' }, 'the first heartbeat counts whole');
  await send(device, heartbeat(20, 198, 2, 180, 20), { active: '200/2', candidate: '200/20' }, 'the second adds its difference');
  assert.deepEqual(await candidateErrorsVerdict(server, fleet), { phase: 'Failed', value: 0.1 }, '20 shadow errors in 200 rows');

  await killHard(server);
  await device.endAsync(true);
  server = await spawnServer(t, dataDir);
  assert.deepEqual(await counters(server), { active: '200/2', candidate: '200/20' }, 'the restarted server exports the totals it had');
  assert.deepEqual(await candidateErrorsVerdict(server, fleet), { phase: 'Failed', value: 0.1 });

  device = await connect(server);
  // While the server was down the device served 100 more rows on each side, without errors: counted once, from the last stored heartbeat.
  const afterRestart = heartbeat(60, 298, 2, 280, 20);
  await send(device, afterRestart, { active: '300/2', candidate: '300/20' }, 'the first heartbeat after the restart');
  const verdict = await candidateErrorsVerdict(server, fleet);
  assert.equal(verdict.phase, 'Failed', 'the shadow errors before the restart still count');
  assert.ok(Math.abs(verdict.value! - 20 / 300) < 1e-12, `value ${verdict.value}`);
  // The same heartbeat again (a redelivery) adds nothing; an agent restart (uptime and counters from 0) adds all it counted since.
  await new Promise((resolve) => setTimeout(resolve, 1100)); // past the 1 s heartbeat throttle: written at once
  await device.publishAsync(telemetryTopic(DEVICE), afterRestart, { qos: 1 });
  await send(device, heartbeat(3, 49, 1, 45, 5), { active: '350/3', candidate: '350/25' }, 'an agent restart');
  await killHard(server);
});
