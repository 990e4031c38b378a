import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { storeArtifactFiles } from '../../server/artifacts/store-artifact-files.ts';
import { runDemo, type DemoResult } from '../../server/demo/demo-run.ts';
import { loadDemoData, startSimulatedAgents, waitForActive } from '../../server/demo/demo-fleet.ts';
import { RestClient } from '../../server/demo/rest-client.ts';
import { planFleet } from '../../server/demo/simulated-fleet.ts';
import { PruneOptionsSchema } from '../../server/pruning/options.ts';
import { GENERAL_SUBDIR } from '../../server/pruning/output-layout.ts';
import { pruneToArtifacts } from '../../server/pruning/prune-to-artifacts.ts';
import type { ShippedDatasetName } from '../../shared/datasets/index.ts';
import { DEVICE_REPORT_METRICS } from '../../shared/metrics/rollout-names.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { createLogger, type Logger } from '../../shared/util/log.ts';
import { tempDir } from '../helpers/cli.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { engineMissing } from '../helpers/engines.ts';
import { freePort } from '../helpers/engines.ts';
import { PrometheusProcess, prometheusBinary, promtoolBinary, type PrometheusApiResponse } from '../helpers/prometheus.ts';
import { DEFAULT_VARIABLES, dashboardQueries, loadDashboard, multiValue, variableQueries, writeAgentTargets, writePrometheusConfig } from './dashboard-queries.ts';

/**
 * Issue #6's acceptance line: every panel's PromQL runs against a real Prometheus that scrapes a
 * running server after a demo rollout, and every query returns data.
 *
 * The demo's model is a classifier (wine), whose devices report accuracy; the MSE panels show
 * regression models, whose devices report MSE instead. So next to the demo fleet the test runs a
 * small regression fleet on the same server: a tiny ODF2NNA prune of the shipped diabetes data
 * (general model as every device's baseline, the pruned one assigned as candidate), on
 * REGRESSION_DEVICES more real agents with diabetes holdouts, which benchmark both and report.
 *
 * A real Prometheus, started from deploy/prometheus (1s intervals), scrapes the demo's server
 * from before the demo starts (so rollout steps, decisions and report series are recorded as
 * they happen) and, after the demo, every demo agent's /metrics (each agent's express app served
 * on an ephemeral port and listed in the agents' file_sd file with its device id). A few
 * predictions per agent make the serving-latency histograms move. Once every target is up, has
 * been scraped a few times and every rule has evaluated since, the dashboard variables are
 * resolved as Grafana does (label values of their selectors, every value selected) and every
 * panel, variable and annotation query must return at least one series with a finite value
 * (bar the explicit allow-lists below).
 */

/**
 * Queries that may legitimately return no series after this demo, keyed `panel [refId]`, with
 * the reason. The test fails for any other empty query, and for a listed query that returns
 * data (so the list shrinks). None today.
 */
const MAY_BE_EMPTY: Readonly<Record<string, string>> = {};

/**
 * Queries whose series may hold only NaN (nothing Grafana can plot) after this demo, with the
 * reason. Every other query needs a finite value in at least one series; a listed query must
 * still return series, and fails once it has values (so the list shrinks).
 */
const MAY_BE_NAN_ONLY: Readonly<Record<string, string>> = {};

const SAMPLE_ROWS = 8;
const PREDICT_REQUESTS = 3;
const SEED = 3;
const CLASSIFIER: ShippedDatasetName = 'wine';
const REGRESSOR: ShippedDatasetName = 'diabetes';
const REGRESSION_DEVICES = 2;

/**
 * Prometheus first, scraping the port the demo server will listen on, then the demo. That port
 * is free when picked but may be taken before the demo binds it (by another test file): then
 * both start again, on another port.
 */
async function startScrapedDemo(binary: string, dataDir: string, log: Logger): Promise<{ prometheus: PrometheusProcess; demo: DemoResult }> {
  for (let attempt = 1; ; attempt++) {
    const serverPort = await freePort();
    const prometheus = await PrometheusProcess.start(binary, (dir) => writePrometheusConfig(dir, { server: `127.0.0.1:${serverPort}`, agents: [] }));
    try {
      const demo = await runDemo({
        dataset: CLASSIFIER,
        devices: 8,
        dataDir: join(dataDir, `demo-${attempt}`),
        httpPort: serverPort,
        seed: SEED,
        pruneOverrides: { units: 48, epochs: 60 },
        log,
        say: () => {},
      });
      return { prometheus, demo };
    } catch (error) {
      await prometheus.stop();
      if (attempt === 3 || !(error instanceof Error && error.message.includes('EADDRINUSE'))) throw error;
    }
  }
}

test('after a demo rollout, every dashboard query returns data from a real Prometheus scraping the server and the agents, whose expositions pass promtool check metrics', async (t) => {
  const binary = prometheusBinary();
  const promtool = promtoolBinary();
  if (!binary) return engineMissing(t, 'Prometheus', 'no prometheus binary at /usr/bin/prometheus or on PATH (set PROMETHEUS_BIN)');
  const started = Date.now();

  const dataDir = await tempDir(t, 'fleetprune-dashboard-data-');
  const log = createLogger('demo', 'silent');
  const { prometheus, demo } = await startScrapedDemo(binary, dataDir, log);
  deferCleanup(t, () => prometheus.stop());
  deferCleanup(t, () => demo.close()); // first: before Prometheus and the data directory go
  const demoSeconds = (Date.now() - started) / 1000;
  t.diagnostic(`demo: ${demoSeconds.toFixed(1)} s; ${demo.rollouts.map((r) => `${r.candidate} ${r.outcome}`).join(', ')}`);
  assert.equal(demo.rollouts.length, 2);

  const regression = await startRegressionFleet(demo, join(dataDir, 'regression'), log);
  await prometheus.waitFor(`MSE of the candidate and the baseline on ${REGRESSION_DEVICES} regression devices`, async () => {
    const series = await scalar(prometheus, `count(${DEVICE_REPORT_METRICS.mse}{model="${REGRESSOR}"})`);
    return series === 2 * REGRESSION_DEVICES || `${series} series`;
  }, 60_000);
  t.diagnostic(`regression fleet: ${REGRESSOR}@${regression.baseline} active, @${regression.candidate} candidate; ${((Date.now() - started) / 1000).toFixed(1)} s in`);

  // Each agent's /metrics and /v1/predict on an ephemeral port, listed in the agents' file_sd file.
  const servers: Server[] = [];
  t.after(() => Promise.all(servers.map((server) => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))))));
  const agentTargets: { target: string; device: string; rows: number[][] }[] = [];
  const sampleRows = (dataset: ShippedDatasetName) => loadDemoData(dataset, SEED).holdout.x.slice(0, SAMPLE_ROWS);
  const rowsOf = { classifier: sampleRows(CLASSIFIER), regressor: sampleRows(REGRESSOR) };
  for (const agent of demo.agents) {
    const server = createServer(agent.app);
    servers.push(server);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const rows = regression.devices.includes(agent.deviceId) ? rowsOf.regressor : rowsOf.classifier;
    agentTargets.push({ target: `127.0.0.1:${(server.address() as AddressInfo).port}`, device: agent.deviceId, rows });
  }
  await writeAgentTargets(prometheus.dir, agentTargets);

  await prometheus.waitFor(`the server and ${agentTargets.length} agent targets up`, async () => {
    const targets = (await prometheus.api('targets', { state: 'active' })).data as unknown as { activeTargets: { scrapePool: string; health: string }[] };
    const up = targets.activeTargets.filter((target) => target.health === 'up');
    const agentsUp = up.filter((target) => target.scrapePool === 'fleetprune-agent').length;
    const serverUp = up.filter((target) => target.scrapePool === 'fleetprune').length;
    return (serverUp === 1 && agentsUp === agentTargets.length) || `server up ${serverUp}, agents up ${agentsUp}/${agentTargets.length}`;
  });

  // Real traffic for the serving panels: a few prediction requests per agent (rows of its model's data set), between scrapes.
  for (let round = 0; round < PREDICT_REQUESTS; round++) {
    await Promise.all(
      agentTargets.map(async ({ target, device, rows }) => {
        const response = await fetch(`http://${target}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ rows }) });
        assert.equal(response.status, 200, `${device}: ${await response.text()}`);
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }

  await prometheus.waitFor('a few scrapes of every agent, with the predictions', async () => {
    const scrapes = await scalar(prometheus, 'min(count_over_time(up{job="fleetprune-agent"}[1m]))');
    const predicting = await scalar(prometheus, 'count(rate(fleetprune_agent_predict_latency_seconds_count[1m]) > 0)');
    return (scrapes >= 4 && predicting === agentTargets.length) || `min scrapes ${scrapes}, agents with a prediction rate ${predicting}`;
  });
  const scraped = Date.now();

  // The exposition of the server and of every agent, with all their kinds of series present,
  // passes promtool's lint: names, HELP and TYPE as Prometheus expects them (prom-client's summed
  // gauges named `_total`, as counters are, failed it).
  if (promtool) {
    for (const target of [`127.0.0.1:${demo.server.port('http')}`, ...agentTargets.map((agent) => agent.target)]) {
      const exposition = await (await fetch(`http://${target}/metrics`)).text();
      const lint: { status: number | null; stdout: string; stderr: string } = spawnSync(promtool, ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
      assert.equal(lint.status, 0, `promtool check metrics of http://${target}/metrics:\n${lint.stdout}${lint.stderr}`);
    }
  } else if (process.env.CI === 'true') {
    assert.fail('no promtool at /usr/bin/promtool or on PATH (apt-get install prometheus)');
  }
  await prometheus.waitFor('every rule evaluated since', async () => {
    const groups = ((await prometheus.api('rules')).data as unknown as { groups: { name: string; lastEvaluation: string; rules: { name: string; health: string; lastError?: string }[] }[] }).groups;
    const bad = groups.flatMap((group) => group.rules).filter((rule) => rule.health === 'err');
    assert.deepEqual(bad.map((rule) => `${rule.name}: ${rule.lastError}`), []);
    const stale = groups.filter((group) => Date.parse(group.lastEvaluation) < scraped + 1000);
    return stale.length === 0 || `groups not evaluated yet: ${stale.map((group) => group.name).join(', ')}`;
  });

  // "Last seen, by device" samples `up` on a 15s-aligned subquery grid: an agent shows up there
  // once a 15 s boundary has passed while it was being scraped.
  await prometheus.waitFor(
    'every agent in the 1m-resolution "last seen" subquery',
    async () => {
      const devices = await scalar(prometheus, 'count(max by (device) (max_over_time(timestamp(up{job="fleetprune-agent"} == 1)[1h:15s])))');
      return devices === agentTargets.length || `${devices} devices`;
    },
    30_000,
  );

  // The variables as Grafana resolves them: label values of each selector, every value selected.
  const dashboard = loadDashboard();
  const end = Date.now() / 1000;
  const range = { start: String(end - 3600), end: String(end) };
  const variables: Record<string, string> = { ...DEFAULT_VARIABLES };
  const resolved: Record<string, string[]> = {};
  for (const { name } of variableQueries(dashboard)) {
    // Later selectors use the values of earlier variables.
    const { selector, label } = variableQueries(dashboard, variables).find((v) => v.name === name)!;
    const answer = await prometheus.api(`label/${label}/values`, { 'match[]': selector, ...range });
    assert.equal(answer.status, 'success', `variable $${name}: ${answer.error}`);
    const values = answer.data as unknown as string[];
    assert.ok(values.length > 0, `variable $${name}: no values for ${selector}`);
    resolved[name] = values;
    variables[name] = multiValue(values);
  }
  t.diagnostic(`variables: ${JSON.stringify(resolved)}`);
  assert.deepEqual(resolved.model, [REGRESSOR, CLASSIFIER].sort());
  for (const version of [...Object.values(demo.versions), regression.baseline, regression.candidate]) assert.ok(resolved.version!.includes(version), `$version offers ${version}`);

  const queries = dashboardQueries(dashboard, { variables, expectData: (query) => !(`${query.panel} [${query.refId}]` in MAY_BE_EMPTY) });
  const unplotted: string[] = [];
  for (const query of queries) {
    const key = `${query.panel} [${query.refId}]`;
    const answer = query.instant ? await prometheus.query(query.expr, new Date(end * 1000)) : await prometheus.api('query_range', { query: query.expr, ...range, step: '10' });
    const result = answer.status === 'success' ? (answer.data!.result as { value?: [number, string]; values?: [number, string][] }[]) : [];
    const finite = result.filter((series) => (series.values ?? [series.value!]).some(([, value]) => Number.isFinite(Number(value)))).length;
    if (finite === 0) unplotted.push(key);
    await t.test(`${key}: ${result.length} series, ${finite} with a value`, () => {
      assert.equal(answer.status, 'success', `${answer.errorType}: ${answer.error}\n${query.expr}`);
      if (!query.expectData) {
        assert.equal(result.length, 0, `${key} returns data now: remove it from MAY_BE_EMPTY (${MAY_BE_EMPTY[key]})`);
      } else {
        assert.ok(result.length > 0, `no data for: ${query.expr}`);
        if (key in MAY_BE_NAN_ONLY) assert.equal(finite, 0, `${key} has values now: remove it from MAY_BE_NAN_ONLY (${MAY_BE_NAN_ONLY[key]})`);
        else assert.ok(finite > 0, `only NaN / ±Inf for: ${query.expr}`);
      }
    });
  }
  t.diagnostic(`${queries.length} queries; without a plottable value: ${unplotted.join('; ') || 'none'}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);

  // Each task's quality panels show its model, and only its model: accuracy the classifier's, MSE the regressor's.
  const expectedModels: Record<string, string> = {
    'Accuracy — candidate': CLASSIFIER,
    'Accuracy — baseline (active)': CLASSIFIER,
    'Candidate − baseline accuracy, by cohort': CLASSIFIER,
    'MSE — candidate': REGRESSOR,
    'MSE — baseline (active)': REGRESSOR,
    'Candidate ÷ baseline MSE, by cohort': REGRESSOR,
  };
  const models: Record<string, string> = {};
  for (const panel of Object.keys(expectedModels)) {
    const query = queries.find((q) => q.panel === panel);
    assert.ok(query, `panel "${panel}"`);
    const answer = query.instant ? await prometheus.query(query.expr, new Date(end * 1000)) : await prometheus.api('query_range', { query: query.expr, ...range, step: '10' });
    models[panel] = [...new Set((answer.data!.result as { metric: { model: string } }[]).map((series) => series.metric.model))].sort().join(',');
  }
  assert.deepEqual(models, expectedModels, 'the models each quality panel shows');
  // Candidate − baseline compares each cohort on the same devices, as the analysis pairs a device with itself:
  // the active model's mean over the devices that run the candidate, not over the whole cohort.
  const accuracyPanel = queries.find((q) => q.panel === 'Candidate − baseline accuracy, by cohort')!;
  const shown = (await prometheus.query(accuracyPanel.expr, new Date(end * 1000))).data!.result as { metric: Record<string, string>; value: [number, string] }[];
  const raw = (await prometheus.query(`${DEVICE_REPORT_METRICS.accuracy}{model="${CLASSIFIER}"}`, new Date(end * 1000))).data!.result as { metric: Record<string, string>; value: [number, string] }[];
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const expected: Record<string, number> = {};
  for (const cohort of new Set(raw.map((series) => series.metric.cohort!))) {
    const of = (role: string) => raw.filter((series) => series.metric.cohort === cohort && series.metric.role === role);
    const candidates = of('candidate');
    if (candidates.length === 0) continue;
    const paired = new Set(candidates.map((series) => series.metric.device));
    expected[cohort] = mean(candidates.map((series) => Number(series.value[1]))) - mean(of('active').filter((series) => paired.has(series.metric.device)).map((series) => Number(series.value[1])));
  }
  assert.ok(Object.keys(expected).length > 0, 'a cohort with a candidate');
  assert.deepEqual(
    Object.fromEntries(shown.map((series) => [series.metric.cohort, Number(Number(series.value[1]).toFixed(9))])),
    Object.fromEntries(Object.entries(expected).map(([cohort, value]) => [cohort, Number(value.toFixed(9))])),
    'candidate − baseline accuracy by cohort, from the device series',
  );
  // The per-model quality recording rules, likewise: candidate and baseline of each cohort.
  for (const [rule, model] of [
    ['model_version_role_cohort:fleetprune_device_accuracy_ratio:avg', CLASSIFIER],
    ['model_version_role_cohort:fleetprune_device_mse:avg', REGRESSOR],
  ] as const) {
    const result = ((await prometheus.query(rule)).data!.result as { metric: Record<string, string>; value: [number, string] }[]).filter((series) => Number.isFinite(Number(series.value[1])));
    assert.deepEqual([...new Set(result.map((series) => series.metric.model))], [model], `${rule}: ${JSON.stringify(result.map((series) => series.metric))}`);
    assert.deepEqual([...new Set(result.map((series) => series.metric.role))].sort(), ['active', 'candidate'], rule);
  }
});

/**
 * A regression model on a few more real agents of the demo's server: a tiny ODF2NNA prune of
 * REGRESSOR's training rows (its general model and the pruned one, signed with the server's key
 * as the demo's are), REGRESSION_DEVICES devices holding REGRESSOR holdout rows (their cohorts are
 * sites, as in the demo), the general model activated on them and the pruned one assigned as
 * candidate, which each agent benchmarks against its active model on its holdout and reports (MSE).
 * The agents join demo.agents, so demo.close() stops them before the server.
 */
async function startRegressionFleet(demo: DemoResult, dataDir: string, log: Logger): Promise<{ baseline: string; candidate: string; devices: string[] }> {
  const { train, holdout } = loadDemoData(REGRESSOR, SEED);
  assert.equal(train.task, 'regression');
  const outDir = join(dataDir, 'artifacts', REGRESSOR);
  const pruned = await pruneToArtifacts({
    dataset: train,
    options: PruneOptionsSchema.parse({ task: train.task, seed: SEED, layers: 2, units: 16, epochs: 20, retrainEpochs: 10, epsilons: [0.5], baselines: false }),
    backend: await initTfjs(),
    outDir,
    name: REGRESSOR,
    privateKey: demo.server.ctx.signingKey.privateKey,
  });
  const register = async (dir: string, manifest: typeof pruned.general) => {
    await storeArtifactFiles(dir, manifest, demo.server.ctx.blobs);
    return (await demo.server.ctx.registry.register({ model: REGRESSOR, manifest, actor: 'test' })).version;
  };
  const baseline = await register(join(outDir, GENERAL_SUBDIR), pruned.general);
  const candidate = await register(outDir, pruned.pruned);

  const devices = planFleet(REGRESSION_DEVICES, holdout, SEED).map((device) => ({ ...device, id: `${REGRESSOR}-${device.id}` }));
  const deviceIds = devices.map((device) => device.id);
  const httpUrl = `http://127.0.0.1:${demo.server.port('http')}`;
  const api = new RestClient(httpUrl, demo.adminToken);
  const agents = await startSimulatedAgents({ api, devices, brokerUrl: `mqtt://127.0.0.1:${demo.server.port('mqtt')}`, serverUrl: httpUrl, dataDir: join(dataDir, 'devices'), sessions: new OrtSessionCache(), log });
  demo.agents.push(...agents);
  await api.post('/assignments', { model: REGRESSOR, version: baseline, role: 'active', deviceIds });
  await waitForActive(api, REGRESSOR, baseline, REGRESSION_DEVICES);
  await api.post('/assignments', { model: REGRESSOR, version: candidate, role: 'candidate', deviceIds });
  return { baseline, candidate, devices: deviceIds };
}

/** The single value of an instant query (NaN when it returns nothing). */
async function scalar(prometheus: PrometheusProcess, expr: string): Promise<number> {
  const answer: PrometheusApiResponse = await prometheus.query(expr);
  const result = answer.data?.result as { value: [number, string] }[] | undefined;
  return result?.[0] ? Number(result[0].value[1]) : Number.NaN;
}
