import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { AgentConfigSchema, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { AssignmentSchema, type BenchmarkReport } from '../../shared/protocol/payloads.ts';
import { assignmentTopic, reportsTopic } from '../../shared/protocol/topics.ts';
import { AgentProcess } from '../agent/agent-process.ts';
import { isOneLineError, REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { killHard, spawnServer, type ServerProcess } from '../server/helpers/server-process.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';

const IRIS = join(REPO_ROOT, 'shared/datasets/iris.csv');
const TINY_OPTIONS = { units: 16, layers: 2, epochs: 15, retrainEpochs: 5, epsilons: [0.2], baselines: false, seed: 1 };

async function api(server: ServerProcess, method: string, path: string, json?: unknown): Promise<any> {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** Versions 1 (general) and 2 (pruned) of `iris`, trained and signed by the server's pruning job. */
async function registerTwoVersions(server: ServerProcess): Promise<void> {
  const job = await api(server, 'POST', '/api/jobs/prune', { name: 'iris', label: 'species', data: { csv: await readFile(IRIS, 'utf8') }, options: TINY_OPTIONS });
  let state = job.state;
  await waitFor(async () => {
    const current = await api(server, 'GET', `/api/jobs/${job.id}`);
    state = current.state;
    if (state === 'failed') throw new Error(`the pruning job failed: ${current.error}`);
    return state === 'succeeded';
  }, 60_000, 'the pruning job');
  const versions = await api(server, 'GET', '/api/models/iris/versions');
  assert.deepEqual(versions.versions.map((version: { version: string }) => version.version), ['1', '2']);
}

async function device(server: ServerProcess, id: string): Promise<any> {
  return api(server, 'GET', `/api/devices/${id}`);
}

/** The value of the first sample of `name` whose labels include every `labels` pair. */
async function metricValue(server: ServerProcess, name: string, labels: Record<string, string> = {}): Promise<number | null> {
  const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return null;
}

/**
 * The whole fleet path with real processes: enroll with the CLI, run the agent with the written
 * config, assign v1 active and v2 candidate with the CLI, see the benchmark ingested and
 * exported, a duplicate report ingested once, and the revoked device refused.
 */
async function fleetScenario(t: TestContext, server: ServerProcess, dir: string): Promise<AgentConfig> {
  const connection = ['--server', `127.0.0.1:${server.grpcPort}`, '--token', ADMIN_TOKEN];
  await registerTwoVersions(server);

  const configPath = join(dir, 'agent.json');
  const enrolled = await runCli(['devices', 'enroll', '--id', 'osaka-1', '--labels', 'site=osaka,cohort=pilot', '--out', configPath, ...connection]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.equal((await stat(configPath)).mode & 0o777, 0o600);
  const config = AgentConfigSchema.parse(JSON.parse(await readFile(configPath, 'utf8')));
  const again = await runCli(['devices', 'enroll', '--id', 'osaka-2', '--out', configPath, ...connection]);
  assert.equal(again.code, 2);
  assert.ok(isOneLineError(again.stderr) && /already exists/.test(again.stderr), again.stderr);
  const badLabels = await runCli(['devices', 'enroll', '--id', 'osaka-3', '--labels', 'site', '--out', join(dir, 'x.json'), ...connection]);
  assert.equal(badLabels.code, 2);
  assert.match(badLabels.stderr, /--labels/);

  const agent = AgentProcess.spawn(
    ['--config', configPath, '--data-dir', join(dir, 'agent'), '--holdout', IRIS, '--label', 'species', '--bench-samples', '20', '--bench-batches', '5', '--heartbeat-seconds', '1'],
    { FLEETPRUNE_LOG_LEVEL: 'warn' },
  );
  t.after(() => agent.stop());
  await agent.ready();
  await waitFor(async () => (await device(server, 'osaka-1')).online, 15_000, 'the device online');

  const assignActive = await runCli(['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--selector', 'site=osaka', ...connection]);
  assert.equal(assignActive.code, 0, assignActive.stderr);
  assert.match(assignActive.stdout, /iris@1 as active to 1 device/);
  await waitFor(async () => (await device(server, 'osaka-1')).active?.version === '1', 30_000, 'v1 active on the device');

  const assignCandidate = await runCli(['assign', '--model', 'iris', '--version', '2', '--role', 'candidate', '--device', 'osaka-1', ...connection]);
  assert.equal(assignCandidate.code, 0, assignCandidate.stderr);
  const series = { model: 'iris', version: '2', role: 'candidate', cohort: 'pilot', device: 'osaka-1' };
  await waitFor(async () => (await metricValue(server, 'fleetprune_device_reports_total', series)) === 1, 60_000, 'the benchmark report exported');
  const accuracy = await metricValue(server, 'fleetprune_device_accuracy_ratio', { ...series });
  assert.ok(accuracy !== null && accuracy > 0.5 && accuracy <= 1, `accuracy ${accuracy}`);
  assert.equal(await metricValue(server, 'fleetprune_device_reports_total', { version: '1', role: 'active', cohort: 'pilot' }), 1);
  const shown = await device(server, 'osaka-1');
  assert.deepEqual([shown.active?.version, shown.candidate?.version, shown.online], ['1', '2', true]);
  const listed = await runCli(['devices', 'list', ...connection]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /osaka-1\s+online\s+\S+\s+iris@1\s+iris@2\s+cohort=pilot,site=osaka|osaka-1\s+online\s+\S+\s+iris@1\s+iris@2\s+site=osaka,cohort=pilot/);

  // The same report id twice: stored and exported once, counted as a duplicate.
  await agent.stop();
  await waitFor(async () => !(await device(server, 'osaka-1')).online, 10_000, 'the device offline');
  const client = await connectClient(config.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: config.broker.password });
  const report = handmadeReport(shown.candidate, shown.active);
  for (let i = 0; i < 2; i++) await client.publishAsync(reportsTopic('osaka-1'), Buffer.from(JSON.stringify(report)), { qos: 1 });
  await waitFor(async () => ((await metricValue(server, 'fleetprune_fleet_duplicate_reports_total')) ?? 0) >= 1, 10_000, 'the duplicate counted');
  assert.equal(await metricValue(server, 'fleetprune_device_reports_total', series), 2);
  await client.endAsync();

  // Revoked: refused at the broker, shown as revoked.
  const revoked = await runCli(['devices', 'revoke', 'osaka-1', ...connection]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(await metricValue(server, 'fleetprune_device_reports_total', { device: 'osaka-1' }), null, 'a revoked device\'s series are dropped');
  await waitFor(async () => {
    try {
      const late = await connectClient(config.broker.url, { clientId: 'osaka-1', username: 'osaka-1', password: config.broker.password });
      await late.endAsync(true);
      return false;
    } catch {
      return true;
    }
  }, 10_000, 'the revoked device refused');
  assert.match((await runCli(['devices', 'list', ...connection])).stdout, /osaka-1\s+revoked/);
  const unknown = await runCli(['devices', 'revoke', 'nobody', ...connection]);
  assert.equal(unknown.code, 2);
  assert.ok(isOneLineError(unknown.stderr) && /no device nobody/.test(unknown.stderr), unknown.stderr);
  return config;
}

function handmadeReport(candidate: { model: string; version: string; sha256: string }, active: { model: string; version: string; sha256: string }): BenchmarkReport {
  const bench = <R extends 'active' | 'candidate'>(ref: typeof candidate, role: R) => ({
    ...ref, role, score: { accuracy: 0.9, correct: 135, total: 150 }, latencyMs: { p50: 0.1, p95: 0.2, p99: 0.3, samples: 20 },
    batchSize: 64, throughputRowsPerSecond: 1000, loadTimeMs: 1, rssIncreaseBytes: 0,
  });
  return {
    schema: 1, id: `dup-${randomBytes(6).toString('hex')}`, kind: 'benchmark', deviceId: 'osaka-1', createdAt: new Date().toISOString(), assignmentId: null,
    holdout: { rows: 150, fingerprint: 'handmade', task: 'classification' }, active: bench(active, 'active'), candidate: bench(candidate, 'candidate'),
  };
}

test('fleet end to end: CLI enrollment, a real agent, assignments, ingest, duplicates, revocation (embedded broker)', async (t) => {
  const dir = await tempDir(t);
  const dataDir = join(dir, 'server');
  const server = await spawnServer(t, dataDir);
  const mqttPort = Number(/mqtt=(\d+)/.exec(server.line)?.[1]);
  assert.ok(mqttPort > 0);
  const config = await fleetScenario(t, server, dir);
  assert.equal(config.broker.url, `mqtt://127.0.0.1:${mqttPort}`);

  // A restarted server republishes the retained assignments its embedded broker forgot.
  await killHard(server);
  const restarted = await spawnServer(t, dataDir, []);
  const enrolled = await api(restarted, 'POST', '/api/devices', { id: 'kyoto-1', labels: { site: 'kyoto' } });
  await api(restarted, 'POST', '/api/assignments', { model: 'iris', version: '1', role: 'active', deviceIds: ['kyoto-1'] });
  await killHard(restarted);
  const third = await spawnServer(t, dataDir, []);
  const brokerUrl = `mqtt://127.0.0.1:${Number(/mqtt=(\d+)/.exec(third.line)?.[1])}`;
  const client = await connectClient(brokerUrl, { clientId: 'kyoto-1', username: 'kyoto-1', password: enrolled.broker.password });
  t.after(() => client.endAsync(true));
  const received = new Promise<Buffer>((resolve) => client.once('message', (_topic, payload) => resolve(payload)));
  await client.subscribeAsync(assignmentTopic('kyoto-1'), { qos: 1 });
  const assignment = AssignmentSchema.parse(JSON.parse((await received).toString()));
  assert.deepEqual([assignment.version, assignment.role], ['1', 'active']);
});

test('fleet end to end against Mosquitto (--mqtt-url, generated password and ACL files, SIGHUP reload)', async (t) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'Mosquitto', 'no mosquitto executable on PATH');
  const dir = await tempDir(t);
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, dir);
  t.after(() => mosquitto.stop());
  const server = await spawnServer(t, join(dir, 'server'), ['--mqtt-url', mosquitto.url, '--mosquitto-dir', mosquitto.authDir, '--mosquitto-pid-file', pidFile], {
    FLEETPRUNE_MQTT_PASSWORD: password,
  });
  assert.doesNotMatch(server.line, /mqtt=/);
  const config = await fleetScenario(t, server, dir);
  assert.equal(config.broker.url, mosquitto.url);
  const passwords = await readFile(join(mosquitto.authDir, 'passwords'), 'utf8');
  assert.doesNotMatch(passwords, /^osaka-1:/m);
});
