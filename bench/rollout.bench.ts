/**
 * npm run bench:rollout — rollouts over a fleet of 200 agents on loopback, in one process
 * ("lightweight mode": the real Agent and protocol code, one shared onnxruntime session per model,
 * small holdouts, tiny on-device benchmarks), a real server with its embedded broker and SQLite:
 *   (i) time from the rollback call until each device's report of the baseline being active is
 *       ingested by the server (GET /api/devices polled every 50 ms), after a full promotion,
 *       over several repetitions;
 *  (ii) time from a pilot's start to the promotion decision with a 5 s analysis interval.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from '../agent/agent.ts';
import { percentile } from '../agent/model-benchmark.ts';
import { OrtSessionCache } from '../agent/session-cache.ts';
import { startServer } from '../server/app/start-server.ts';
import { storeArtifactFiles } from '../server/artifacts/store-artifact-files.ts';
import { parseServerConfig } from '../server/config/server-config.ts';
import { buildDemoModels, type DemoArtifact } from '../server/demo/demo-models.ts';
import { loadDemoData, startSimulatedAgents, waitForActive } from '../server/demo/demo-fleet.ts';
import { RestClient, waitFor } from '../server/demo/rest-client.ts';
import type { DeviceView } from '../server/fleet/device-view.ts';
import type { RolloutDetail } from '../server/rollout/rollout-views.ts';
import type { Dataset } from '../shared/data/dataset.ts';
import { initTfjs } from '../shared/model/tfjs-backend.ts';
import { createLogger } from '../shared/util/log.ts';
import { describeMachine, markdownTable, median, writeBenchmarkSection, writeResultsJson } from './lib/benchmarks-file.ts';
import { benchArgs } from './lib/bench-args.ts';

// It takes no flags: one given is refused before anything runs (it was ignored, and the section overwritten).
benchArgs('rollout', {});

const DEVICES = 200;
const PILOT = 20;
const REPETITIONS = 3;
const HOLDOUT_ROWS = 12;
const MODEL = 'iris';
const POLL_MS = 50;

const log = createLogger('bench', 'silent');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function smallHoldout(holdout: Dataset, device: number): Dataset {
  const rows = Array.from({ length: HOLDOUT_ROWS }, (_, i) => (device * 7 + i) % holdout.x.length);
  return { ...holdout, x: rows.map((i) => holdout.x[i]!), y: rows.map((i) => holdout.y[i]!) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-bench-rollout-'));
  const adminToken = randomBytes(24).toString('base64url');
  const server = await startServer(parseServerConfig({ dataDir: join(dir, 'server'), host: '127.0.0.1', httpPort: 0, grpcPort: 0, mqttPort: 0, adminToken }), { log });
  let agents: Agent[] = [];
  try {
    const api = new RestClient(`http://127.0.0.1:${server.port('http')}`, adminToken);
    const { train, holdout } = loadDemoData(MODEL, 1);
    process.stdout.write('training a small iris model and its ODF2NNA candidate …\n');
    const models = await buildDemoModels({
      dataset: train,
      name: MODEL,
      workDir: join(dir, 'artifacts'),
      backend: await initTfjs(),
      privateKey: server.ctx.signingKey.privateKey,
      seed: 1,
      overrides: { units: 16, layers: 2, epochs: 20, retrainEpochs: 5, epsilons: [0.3], baselines: false },
    });
    const register = async (artifact: DemoArtifact) => {
      await storeArtifactFiles(artifact.dir, artifact.manifest, server.ctx.blobs);
      return (await server.ctx.registry.register({ model: MODEL, manifest: artifact.manifest, actor: 'bench' })).version;
    };
    const baseline = await register(models.general);
    const candidate = await register(models.good);

    const devices = Array.from({ length: DEVICES }, (_, d) => ({
      id: `dev-${String(d + 1).padStart(3, '0')}`,
      labels: { site: `site-${d % 4}`, ...(d < PILOT ? { pilot: 'true' } : {}) },
      holdout: smallHoldout(holdout, d),
    }));
    const enrollStarted = Date.now();
    agents = await startSimulatedAgents({
      api,
      devices,
      dataDir: join(dir, 'devices'),
      sessions: new OrtSessionCache(),
      log,
      heartbeatIntervalMs: 10_000,
      benchmark: { latencySamples: 20, throughputBatches: 1, batchSize: 16 },
      concurrency: 20,
    });
    await api.post('/assignments', { model: MODEL, version: baseline, role: 'active', allDevices: true });
    await waitForActive(api, MODEL, baseline, DEVICES, 120_000, 200);
    const enrollSeconds = (Date.now() - enrollStarted) / 1000;
    process.stdout.write(`${DEVICES} agents enrolled and running ${MODEL}@${baseline} in ${enrollSeconds.toFixed(1)} s\n`);

    const rolloutDetail = (id: string) => api.get<RolloutDetail>(`/rollouts/${id}`);
    const waitRollout = (id: string, done: (r: RolloutDetail) => boolean, timeoutMs = 120_000) =>
      waitFor(`rollout ${id}`, async () => {
        const r = await rolloutDetail(id);
        return done(r) ? r : undefined;
      }, timeoutMs, 100);

    // (i) rollback of the whole fleet after a full promotion.
    const repetitions: { perDeviceMs: number[]; allMs: number; callMs: number }[] = [];
    for (let rep = 0; rep < REPETITIONS; rep++) {
      const { id } = await api.post<{ id: string }>('/rollouts', { model: MODEL, candidateVersion: candidate, steps: [{ setWeight: 100 }] });
      await waitRollout(id, (r) => r.phase === 'Completed' && r.pendingActions.length === 0);
      await waitForActive(api, MODEL, candidate, DEVICES, 120_000, 200);
      await sleep(500);
      const seen = new Map<string, number>();
      const t0 = performance.now();
      const call = api.post(`/rollouts/${id}/rollback?reason=bench`).then(() => performance.now() - t0);
      while (seen.size < DEVICES) {
        const views = await api.allDevices<DeviceView>();
        const now = performance.now() - t0;
        for (const view of views) if (view.active?.version === baseline && !seen.has(view.id)) seen.set(view.id, now);
        if (now > 60_000) throw new Error(`rollback: only ${seen.size}/${DEVICES} devices back after 60 s`);
        if (seen.size < DEVICES) await sleep(POLL_MS);
      }
      const callMs = await call;
      const perDeviceMs = [...seen.values()].sort((a, b) => a - b);
      repetitions.push({ perDeviceMs, allMs: perDeviceMs.at(-1)!, callMs });
      process.stdout.write(`rollback ${rep + 1}: p50 ${percentile(perDeviceMs, 0.5).toFixed(0)} ms, p99 ${percentile(perDeviceMs, 0.99).toFixed(0)} ms, all ${perDeviceMs.at(-1)!.toFixed(0)} ms (call returned in ${callMs.toFixed(0)} ms)\n`);
      await waitRollout(id, (r) => r.phase === 'RolledBack' && r.pendingActions.length === 0).catch(() => undefined);
      // Let the devices drop the candidate before the next promotion.
      await sleep(1000);
    }

    // (ii) pilot → analysis (5 s interval) → promotion decision.
    const relative = (name: string, metric: string) => ({ name, interval: '5s', initialDelay: '5s', count: 2, relative: { metric, window: '5m' } });
    const pilotStarted = Date.now();
    const { id: pilotRollout } = await api.post<{ id: string }>('/rollouts', {
      model: MODEL,
      candidateVersion: candidate,
      steps: [{ selector: { matchLabels: { pilot: 'true' } } }, { analysis: { metrics: [relative('accuracy', 'accuracy'), relative('error-rate', 'error_rate')] } }, { setWeight: 100 }],
    });
    const decided = await waitRollout(pilotRollout, (r) => r.terminal || r.phase === 'Paused', 180_000);
    const decisions = decided.decisions as { kind: string; verdict: string; stepIndex: number; at: string; message: string }[];
    const at = (predicate: (d: (typeof decisions)[number]) => boolean) => {
      const found = decisions.find(predicate);
      return found ? (Date.parse(found.at) - pilotStarted) / 1000 : null;
    };
    const pilot = {
      outcome: decided.phase,
      pilotAcknowledgedS: at((d) => d.kind === 'step' && d.verdict === 'completed' && d.stepIndex === 0),
      analysisDecidedS: at((d) => d.kind === 'analysis' && d.verdict !== 'started'),
      promotionDecisionS: at((d) => d.kind === 'promotion'),
      completedS: decided.phase === 'Completed' ? (Date.parse(decided.updatedAt) - pilotStarted) / 1000 : null,
      analysis: decisions.find((d) => d.kind === 'analysis' && d.verdict !== 'started')?.message ?? null,
    };
    process.stdout.write(`pilot of ${PILOT}: ${JSON.stringify(pilot)}\n`);
    // A pilot that did not promote measured no promotion decision: its times would replace a
    // real run's in BENCHMARKS.md under that heading (and a run whose analysis failed says more
    // about the candidate than about the rollout's speed).
    if (pilot.outcome !== 'Completed') {
      process.stderr.write(`bench:rollout: the pilot ended ${pilot.outcome}, not Completed (${pilot.analysis ?? 'no analysis decision'}): BENCHMARKS.md and bench/results/rollout.json are left as they were; run it again\n`);
      process.exitCode = 1;
      return;
    }

    const all = repetitions.flatMap((r) => r.perDeviceMs).sort((a, b) => a - b);
    const p99s = repetitions.map((r) => percentile(r.perDeviceMs, 0.99));
    const results = {
      machine: describeMachine(),
      date: new Date().toISOString(),
      devices: DEVICES,
      pilot: PILOT,
      repetitions: REPETITIONS,
      pollMs: POLL_MS,
      enrollSeconds,
      rollback: repetitions.map((r) => ({ p50Ms: percentile(r.perDeviceMs, 0.5), p99Ms: percentile(r.perDeviceMs, 0.99), maxMs: r.allMs, callMs: r.callMs })),
      rollbackPooled: { p50Ms: percentile(all, 0.5), p99Ms: percentile(all, 0.99), maxMs: Math.max(...all), medianOfRepP99Ms: median(p99s) },
      targetP99Ms: 2000,
      meetsTarget: Math.max(...p99s) < 2000,
      pilotToPromotion: pilot,
    };
    await writeResultsJson('rollout', results);
    const fmt = (v: number) => `${v.toFixed(0)} ms`;
    const secs = (v: number | null) => (v === null ? '—' : `${v.toFixed(1)} s`);
    await writeBenchmarkSection(
      'Rollouts (bench:rollout)',
      `${DEVICES} agents in one process on loopback ("lightweight mode": the real \`Agent\` and MQTT protocol code, one shared onnxruntime session per model, ${HOLDOUT_ROWS}-row holdouts, tiny on-device benchmarks), a real server with its embedded broker and SQLite, a small iris model (16 units) and its ODF2NNA candidate. Machine: ${describeMachine()}. ${new Date().toISOString().slice(0, 10)}.

**Rollback of the whole fleet after full promotion** — from the \`POST /api/rollouts/:id/rollback\` call until the server has ingested each device's report that the baseline is active (GET /api/devices polled every ${POLL_MS} ms, so times are up to ${POLL_MS} ms late, plus the time one listing of every device takes), ${REPETITIONS} repetitions:

${markdownTable(
  ['repetition', 'p50 per device', 'p99 per device', 'last device', 'rollback call returned'],
  [
    ...results.rollback.map((r, i) => [String(i + 1), fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.maxMs), fmt(r.callMs)]),
    ['pooled', fmt(results.rollbackPooled.p50Ms), fmt(results.rollbackPooled.p99Ms), fmt(results.rollbackPooled.maxMs), ''],
  ],
)}

Target: p99 under 2 s for ${DEVICES} devices — ${results.meetsTarget ? 'met' : '**not met**'} (worst repetition's p99 ${fmt(Math.max(...p99s))}). For comparison, a device that polls finds out about a rollback only at its next poll: hawkBit's default polling interval is 5 minutes and Mender's update check 30 minutes, and Flagger only reacts at its next analysis tick (60 s by default); over MQTT the server pushes the revert and every device acts on it at once.

**Pilot to promotion decision** — a rollout to the ${PILOT} pilot devices, then an analysis (relative accuracy and error rate, initial delay 5 s, interval 5 s, 2 measurements), then everyone:

${markdownTable(
  ['pilot acknowledged', 'analysis decided', 'promotion decision', 'outcome'],
  [[secs(pilot.pilotAcknowledgedS), secs(pilot.analysisDecidedS), secs(pilot.promotionDecisionS), pilot.outcome]],
)}

Times are from the \`POST /api/rollouts\` call. The pilot devices acknowledge their candidate (assignment, download, install and the side-by-side benchmark) first; the analysis then takes initial delay + (count − 1) × interval = 10 s. From its decision to the promotion decision is the last step, \`setWeight: 100\`: the candidate is delivered to every other device before the promotion is recorded. Enrolling and starting the ${DEVICES} agents and activating the baseline took ${enrollSeconds.toFixed(1)} s. Raw numbers: \`bench/results/rollout.json\`.`,
    );
    process.stdout.write(`wrote BENCHMARKS.md and bench/results/rollout.json\n`);
  } finally {
    await Promise.allSettled(agents.map((agent) => agent.stop()));
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
