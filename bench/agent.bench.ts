/**
 * npm run bench:agent — the edge agent on loopback with the embedded broker:
 *   - RSS of a real agent process when idle and during an on-device benchmark, and its start-up
 *     time, launched as `fleetprune agent` (tsx) and as the standalone bundle (plain node);
 *   - time from publishing a candidate assignment to receiving the benchmark report (download,
 *     verification, install, side-by-side benchmark, report), for 1 agent and for 50 agents that
 *     run in one process and share one onnxruntime session per model;
 *   - single-row inference latency through POST /v1/predict against a direct onnxruntime call.
 * The artifact routes are served by the test fixture that implements the server's contract.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../agent/agent.ts';
import { buildAgentBundle } from '../deploy/build/agent-bundle.ts';
import { connectMqtt } from '../agent/mqtt-link.ts';
import { runModel } from '../agent/onnx-runner.ts';
import { percentile } from '../agent/model-benchmark.ts';
import { OrtSessionCache } from '../agent/session-cache.ts';
import { ONNX_RUN_PATH } from '../agent/onnx-session.ts';
import type { Report } from '../shared/protocol/payloads.ts';
import { createAgentWorld, isBenchmarkFor, isOutcome, type AgentWorld, type TestArtifact } from '../test/agent/agent-fixtures.ts';
import { AgentProcess } from '../test/agent/agent-process.ts';
import { testLogger } from '../test/helpers/fleet-harness.ts';
import { REPO_ROOT, describeMachine, markdownTable, writeBenchmarkSection, writeResultsJson } from './lib/benchmarks-file.ts';
import { benchArgs } from './lib/bench-args.ts';

// It takes no flags: one given is refused before anything runs (it was ignored, and the section overwritten).
benchArgs('agent', {});

const ROUNDS_ONE_AGENT = 10;
const ROUNDS_FLEET = 3;
const FLEET_SIZE = 50;
const PREDICT_REQUESTS = 2000;

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
// Four decimals below 0.1 ms (a direct inference call), so a ratio of two shown values can be checked.
/** The upper figure of a few samples: under 20, a nearest-rank p95 is the largest, so it is called that. */
const upper = (times: { samples: number; p95Ms: number; maxMs: number }): [string, number] => (times.samples < 20 ? ['max', times.maxMs] : ['p95', times.p95Ms]);
const ms = (value: number) => `${value.toFixed(value < 0.1 ? 4 : value < 10 ? 2 : 0)} ms`;
const sleep = (milliseconds: number) => new Promise((resolve) => setTimeout(resolve, milliseconds));

const STARTS = 5;

/**
 * One way of launching the agent on a device: the CLI through tsx (`fleetprune agent`), or the
 * standalone bundle of `npm run build:agent` under plain node.
 */
interface Launcher {
  label: string;
  bundle?: string;
}

/** RSS of a real agent process idle with v1 active, then its peak while benchmarking v2. */
async function measureProcessRss(world: AgentWorld, dir: string, launcher: Launcher, deviceId: string) {
  const config = await world.config(deviceId);
  const configPath = await AgentProcess.writeConfig(join(dir, deviceId), config);
  const agent = AgentProcess.spawn(
    ['--config', configPath, '--data-dir', join(dir, deviceId, 'data'), '--holdout', world.holdoutPath, '--label', 'kind', '--bench-samples', '20000', '--bench-batches', '300'],
    { FLEETPRUNE_LOG_LEVEL: 'warn' },
    launcher.bundle,
  );
  try {
    await agent.ready();
    const activation = await world.assign(deviceId, world.v1, 'active');
    await world.waitForReport(isOutcome(activation.id, 'activated'));
    await sleep(3000);
    const idle = await rssOf(agent.pid);
    await world.assign(deviceId, world.v2, 'candidate');
    let peak = idle;
    let done = false;
    const benchmarked = isBenchmarkFor(world.v2.id, deviceId);
    void world.waitForReport(benchmarked, 120_000).then(() => (done = true));
    while (!done) {
      peak = Math.max(peak, await rssOf(agent.pid));
      await sleep(20);
    }
    return { idleBytes: idle, benchmarkPeakBytes: peak };
  } finally {
    await agent.stop();
  }
}

/** Median time from spawning the agent to its ready line (config read, MQTT connected, HTTP listening). */
async function measureStartup(world: AgentWorld, dir: string, launcher: Launcher, deviceId: string): Promise<number> {
  const config = await world.config(deviceId);
  const configPath = await AgentProcess.writeConfig(join(dir, deviceId), config);
  const times: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    const started = performance.now();
    const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, deviceId, 'data')], { FLEETPRUNE_LOG_LEVEL: 'warn' }, launcher.bundle);
    try {
      await agent.ready();
      times.push(performance.now() - started);
    } finally {
      await agent.stop();
    }
  }
  // percentile() reads a sorted list: unsorted, it gave the third start, not the median.
  return percentile(times.sort((a, b) => a - b), 0.5);
}

/** RSS of a node process that has loaded the whole CLI (every command's modules) and runs nothing. */
function measureCliBaselineRss(): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '-e', "const cli = await import('./server/cli/main.ts'); await cli.buildProgram(['node', 'fleetprune']); process.stdout.write(String(process.memoryUsage.rss()))"], { cwd: REPO_ROOT }, (error, stdout) =>
      error ? reject(error) : resolve(Number(stdout.trim())),
    );
  });
}

async function startAgents(world: AgentWorld, count: number, prefix: string, sessions: OrtSessionCache, dir: string): Promise<Agent[]> {
  const agents: Agent[] = [];
  for (let i = 0; i < count; i++) {
    const deviceId = `${prefix}-${String(i).padStart(3, '0')}`;
    const agent = new Agent(
      { config: await world.config(deviceId), dataDir: join(dir, deviceId), holdout: world.holdout },
      { connector: connectMqtt, sessions, clock: () => new Date(), logger: testLogger },
    );
    await agent.start();
    agents.push(agent);
  }
  const deadline = Date.now() + 30_000;
  while (agents.some((agent) => !agent.connected) && Date.now() < deadline) await sleep(20);
  return agents;
}

/** Publishes a candidate to every agent at once; returns each agent's assignment → report time (ms). */
async function roundTrip(world: AgentWorld, agents: Agent[], artifact: TestArtifact): Promise<number[]> {
  const started = performance.now();
  const waits: Promise<number>[] = [];
  for (const agent of agents) {
    const assignment = await world.assign(agent.deviceId, artifact, 'candidate');
    const publishedAt = performance.now();
    const isReport = (report: Report) => report.kind === 'benchmark' && report.assignmentId === assignment.id;
    waits.push(world.waitForReport(isReport, 300_000).then(() => performance.now() - publishedAt));
  }
  const times = await Promise.all(waits);
  void started;
  return times;
}

async function measureRoundTrips(world: AgentWorld, count: number, rounds: number, dir: string) {
  const sessions = new OrtSessionCache();
  const agents = await startAgents(world, count, `fleet${count}`, sessions, dir);
  try {
    // Every agent first gets v1 as its active model, so each benchmark compares two models.
    await Promise.all(
      agents.map(async (agent) => {
        const assignment = await world.assign(agent.deviceId, world.v1, 'active');
        await world.waitForReport(isOutcome(assignment.id, 'activated'), 120_000);
      }),
    );
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) times.push(...(await roundTrip(world, agents, round % 2 === 0 ? world.v2 : world.v3)));
    times.sort((a, b) => a - b);
    return { agents: count, rounds, samples: times.length, p50Ms: percentile(times, 0.5), p95Ms: percentile(times, 0.95), maxMs: times.at(-1)!, sharedSessions: sessions.size };
  } finally {
    await Promise.all(agents.map((agent) => agent.stop()));
  }
}

async function measurePredictOverhead(world: AgentWorld, dir: string) {
  const sessions = new OrtSessionCache();
  const [agent] = await startAgents(world, 1, 'predict', sessions, dir);
  const activation = await world.assign(agent!.deviceId, world.v2, 'active');
  await world.waitForReport(isOutcome(activation.id, 'activated'));
  const server = await new Promise<import('node:http').Server>((resolve) => {
    const listening = agent!.app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/predict`;
  const row = world.holdout.forModel(world.v2.manifest).x[0]!;
  const body = JSON.stringify({ rows: [row] });
  const viaHttp: number[] = [];
  const direct: number[] = [];
  const lease = await sessions.acquire({ artifactId: world.v2.id, onnxPath: join(dir, agent!.deviceId, 'models', world.v2.id, 'model.onnx'), onnxSha256: world.v2.manifest.files['model.onnx']!.sha256 });
  try {
    for (let i = 0; i < PREDICT_REQUESTS + 100; i++) {
      const start = performance.now();
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      await response.json();
      if (i >= 100) viaHttp.push(performance.now() - start);
    }
    const features = Float32Array.from(row);
    for (let i = 0; i < PREDICT_REQUESTS + 100; i++) {
      const start = performance.now();
      await runModel(lease.session, features, 1, row.length);
      if (i >= 100) direct.push(performance.now() - start);
    }
  } finally {
    await lease.release();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await agent!.stop();
  }
  viaHttp.sort((a, b) => a - b);
  direct.sort((a, b) => a - b);
  const httpP50 = percentile(viaHttp, 0.5);
  const directP50 = percentile(direct, 0.5);
  return { requests: PREDICT_REQUESTS, httpP50Ms: httpP50, httpP95Ms: percentile(viaHttp, 0.95), directP50Ms: directP50, directP95Ms: percentile(direct, 0.95), overheadRatio: httpP50 / directP50 };
}

async function main(): Promise<void> {
  const world = await createAgentWorld();
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-bench-agent-'));
  try {
    const bundle = await buildAgentBundle(join(dir, 'dist', 'fleetprune-agent.mjs'));
    await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const launchers: Launcher[] = [{ label: '`fleetprune agent` (tsx)' }, { label: 'bundle (`npm run build:agent`)', bundle: bundle.outfile }];
    const processes = [];
    for (const [index, launcher] of launchers.entries()) {
      process.stderr.write(`agent RSS and startup, ${launcher.label}…\n`);
      for (const sub of [`rss-${index}`, `start-${index}`]) await mkdir(join(dir, sub), { recursive: true });
      processes.push({ launcher: launcher.label, ...(await measureProcessRss(world, dir, launcher, `rss-${index}`)), startupMs: await measureStartup(world, dir, launcher, `start-${index}`) });
    }
    const rss = { processes, cliBaselineBytes: await measureCliBaselineRss(), bundleBytes: bundle.bytes };
    process.stderr.write('assignment → report, 1 agent…\n');
    const one = await measureRoundTrips(world, 1, ROUNDS_ONE_AGENT, dir);
    process.stderr.write(`assignment → report, ${FLEET_SIZE} agents…\n`);
    const fleet = await measureRoundTrips(world, FLEET_SIZE, ROUNDS_FLEET, dir);
    process.stderr.write('/v1/predict vs direct onnxruntime…\n');
    const predict = await measurePredictOverhead(world, dir);

    const machine = describeMachine();
    const results = { machine, date: new Date().toISOString(), model: { v1: world.v1.manifest.architecture, v2: world.v2.manifest.architecture }, holdoutRows: world.holdout.forModel(world.v2.manifest).x.length, rss, roundTrip: [one, fleet], predict };
    await writeResultsJson('agent', results);
    const table = markdownTable(
      ['Measurement', 'Result'],
      [
        ...processes.flatMap((measured) => [
          [`Agent RSS, idle (v1 active), ${measured.launcher}`, mib(measured.idleBytes)],
          [`Agent RSS, peak during an on-device benchmark (20000 batch-1 runs and 300 batches of 64 per model), ${measured.launcher}`, mib(measured.benchmarkPeakBytes)],
          [`Agent start → ready (median of ${STARTS}), ${measured.launcher}`, ms(measured.startupMs)],
        ]),
        ['Any `fleetprune` process with the whole CLI loaded, no command running (tsx)', mib(rss.cliBaselineBytes)],
        [`Assignment → benchmark report, 1 agent (p50 / ${upper(one)[0]} of ${one.samples})`, `${ms(one.p50Ms)} / ${ms(upper(one)[1])}`],
        [`Assignment → benchmark report, ${FLEET_SIZE} agents in one process (p50 / ${upper(fleet)[0]} of ${fleet.samples})`, `${ms(fleet.p50Ms)} / ${ms(upper(fleet)[1])}`],
        ['Single-row inference, `POST /v1/predict` (p50 / p95)', `${ms(predict.httpP50Ms)} / ${ms(predict.httpP95Ms)}`],
        [`Single-row inference, direct call of the agent's onnxruntime-node session (${ONNX_RUN_PATH === 'inline' ? 'inline, agent/onnx-session.ts' : 'public run()'}) (p50 / p95)`, `${ms(predict.directP50Ms)} / ${ms(predict.directP95Ms)}`],
        ['/v1/predict overhead ratio (p50 HTTP / p50 direct)', `${predict.overheadRatio.toFixed(1)}×`],
      ],
    );
    const body = [
      `Machine: ${machine}. ${new Date().toISOString().slice(0, 10)}.`,
      '',
      table,
      '',
      `Loopback, embedded aedes broker, artifact routes served by the HTTP fixture of the server contract. ` +
        `A round trip is: publish a candidate assignment → the agent fetches and verifies the signed manifest, downloads and verifies model.onnx, installs it, ` +
        `benchmarks it next to the active model on a ${world.holdout.forModel(world.v2.manifest).x.length}-row holdout (500 batch-1 runs + 100 batches of 64 per model, the defaults) → the report is ingested. ` +
        `The ${FLEET_SIZE} agents share one process, two cores and one onnxruntime session per model; their benchmarks run concurrently, so the fleet numbers measure contention, not a device. ` +
        `Models: the active one a ${world.v1.manifest.architecture.layers.join('-')} dense classifier (${world.v1.manifest.architecture.params} params), the candidate ${world.v2.manifest.architecture.layers.join('-')} (${world.v2.manifest.architecture.params} params). ` +
        `The /v1/predict client (fetch with keep-alive) runs in the same process as the agent; the HTTP cost is a fixed ~${(predict.httpP50Ms - predict.directP50Ms).toFixed(1)} ms per request (p50), so the ratio is large for models this small. ` +
        `The bundle (${(bundle.bytes / 1024).toFixed(0)} KiB, run by its launcher) holds agent/ and shared/ only and runs under plain node; \`fleetprune agent\` loads tsx and compiles the TypeScript sources at start. ` +
        `Each launcher runs against its own device id, one after the other, with the same broker, artifacts and holdout.`,
    ].join('\n');
    await writeBenchmarkSection('Agent (bench:agent)', body);
    process.stdout.write(`${table}\n`);
  } finally {
    await world.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
