import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { ShippedDatasetName } from '../../shared/datasets/index.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import type { Logger } from '../../shared/util/log.ts';
import { storeArtifactFiles } from '../artifacts/store-artifact-files.ts';
import { parseServerConfig } from '../config/server-config.ts';
import { startServer, type RunningServer } from '../app/start-server.ts';
import type { RolloutSummary } from '../rollout/rollout-views.ts';
import type { DeviceView } from '../fleet/device-view.ts';
import type { ProgressEvent } from '../pruning/odf2nna.ts';
import type { PruneOptionsInput } from '../pruning/options.ts';
import type { Agent } from '../../agent/agent.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { loadDemoData, startSimulatedAgents, waitForActive } from './demo-fleet.ts';
import { buildDemoModels, type DemoArtifact, type DemoModels } from './demo-models.ts';
import { decideDemoRollout } from './demo-decision.ts';
import { demoRolloutSpec } from './demo-rollout-spec.ts';
import { RestClient, RestError } from './rest-client.ts';
import { planFleet, type SimulatedDevice } from './simulated-fleet.ts';

export interface DemoOptions {
  dataset: ShippedDatasetName;
  devices: number;
  dataDir: string;
  httpPort: number;
  prometheusUrl?: string;
  seed: number;
  /** Smaller networks for tests (see buildDemoModels). */
  pruneOverrides?: PruneOptionsInput;
  log: Logger;
  /** The server's admin token (FLEETPRUNE_ADMIN_TOKEN); a new random one by default. */
  adminToken?: string;
  /** One line per step, for the terminal. */
  say: (line: string) => void;
  onProgress?: (label: string, event: ProgressEvent) => void;
}

export interface DemoRolloutOutcome {
  candidate: string;
  epsilon: number;
  outcome: 'promoted' | 'rolled_back';
  phase: string;
  reason: string;
  decisions: { at: string; kind: string; verdict: string; message: string }[];
}

export interface DemoResult {
  server: RunningServer;
  agents: Agent[];
  dashboardUrl: string;
  adminToken: string;
  models: DemoModels;
  versions: { general: string; good: string; overPruned: string };
  rollouts: DemoRolloutOutcome[];
  devices: DeviceView[];
  close(): Promise<void>;
}

export function newDemoAdminToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The main job: a server with its embedded broker and SQLite, simulated field devices running the
 * real agent code in this process, a general model and two ODF2NNA candidates, and one staged
 * rollout per candidate decided by the relative checks.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { say, log } = options;
  const adminToken = options.adminToken ?? newDemoAdminToken();
  const config = parseServerConfig({
    dataDir: join(options.dataDir, 'server'),
    host: '127.0.0.1',
    httpPort: options.httpPort,
    grpcPort: 0,
    mqttPort: 0,
    adminToken,
    prometheusUrl: options.prometheusUrl,
  });
  const server = await startServer(config, { log });
  const agents: Agent[] = [];
  const close = async () => {
    await Promise.allSettled(agents.map((agent) => agent.stop()));
    await server.close();
  };
  try {
    const httpUrl = `http://127.0.0.1:${server.port('http')}`;
    const brokerUrl = `mqtt://127.0.0.1:${server.port('mqtt')}`;
    const api = new RestClient(httpUrl, adminToken);
    say(`server up: ${server.line}`);

    // Data: the devices keep half of the rows as their local holdouts; the rest trains.
    const { train, holdout } = loadDemoData(options.dataset, options.seed);
    const fleet = planFleet(options.devices, holdout, options.seed);

    say(`training a general model on ${train.x.length} rows of ${options.dataset} and pruning it with ODF2NNA …`);
    const models = await buildDemoModels({
      dataset: train,
      name: options.dataset,
      workDir: join(options.dataDir, 'artifacts'),
      backend: await initTfjs(),
      privateKey: server.ctx.signingKey.privateKey,
      seed: options.seed,
      overrides: options.pruneOverrides,
      onProgress: options.onProgress,
    });
    const versions = {
      general: await register(server, models.general),
      good: await register(server, models.good),
      overPruned: await register(server, models.overPruned),
    };
    say(`registered ${options.dataset}@${versions.general} (general), @${versions.good} (ε ${models.good.report.epsilon}), @${versions.overPruned} (ε ${models.overPruned.report.epsilon})`);

    const sessions = new OrtSessionCache();
    agents.push(...(await startSimulatedAgents({ api, devices: fleet, brokerUrl, serverUrl: httpUrl, dataDir: join(options.dataDir, 'devices'), sessions, log })));
    say(`${fleet.length} devices enrolled and online (${describeFleet(fleet)})`);

    await api.post('/assignments', { model: options.dataset, version: versions.general, role: 'active', allDevices: true });
    await waitForActive(api, options.dataset, versions.general, fleet.length);
    say(`every device runs ${options.dataset}@${versions.general} (the baseline)`);

    const rollouts: DemoRolloutOutcome[] = [];
    for (const [label, version, epsilon] of [
      ['ODF2NNA candidate', versions.good, models.good.report.epsilon],
      ['over-pruned candidate', versions.overPruned, models.overPruned.report.epsilon],
    ] as const) {
      const started = await startRollout(api, demoRolloutSpec(options.dataset, version, options.prometheusUrl ? 'prometheus' : 'builtin', models.general.manifest.task));
      say(`rollout ${started.id}: ${label} ${options.dataset}@${version} (ε ${epsilon}) to the pilot devices …`);
      const { detail, inconclusive } = await decideDemoRollout(api, started.id, say);
      const outcome: DemoRolloutOutcome = {
        candidate: `${options.dataset}@${version}`,
        epsilon,
        outcome: detail.phase === 'Completed' ? 'promoted' : 'rolled_back',
        phase: detail.phase,
        reason: inconclusive || (detail.outcome?.reason ?? detail.phase),
        decisions: (detail.decisions as { at: number | string; kind: string; verdict: string; message: string }[])
          .filter((d) => ['analysis', 'promotion', 'failure', 'rollback'].includes(d.kind))
          .map((d) => ({ at: new Date(d.at).toISOString(), kind: d.kind, verdict: d.verdict, message: d.message })),
      };
      rollouts.push(outcome);
      say(`rollout ${started.id}: ${outcome.outcome === 'promoted' ? 'promoted to production' : 'rolled back'}: ${outcome.reason}`);
    }
    const devices = await api.allDevices<DeviceView>();
    return { server, agents, dashboardUrl: `${httpUrl}/dashboard/#token=${adminToken}`, adminToken, models, versions, rollouts, devices, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Starts a rollout; while the model's previous rollout is still sending its devices their
 * reverts (409, a device slow to answer) or recording its version statuses, waits and tries
 * again, as an operator would.
 */
export async function startRollout(api: RestClient, spec: Record<string, unknown>, timeoutMs = 120_000): Promise<RolloutSummary> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await api.request<RolloutSummary>('POST', '/rollouts', spec);
    } catch (error) {
      if (!(error instanceof RestError && error.status === 409 && /still (sending|recording)/.test(error.message)) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function register(server: RunningServer, artifact: DemoArtifact): Promise<string> {
  await storeArtifactFiles(artifact.dir, artifact.manifest, server.ctx.blobs);
  const record = await server.ctx.registry.register({ model: artifact.manifest.name, manifest: artifact.manifest, actor: 'demo' });
  return record.version;
}

function describeFleet(fleet: readonly SimulatedDevice[]): string {
  const sites = new Map<string, number>();
  for (const device of fleet) sites.set(device.labels.site!, (sites.get(device.labels.site!) ?? 0) + 1);
  const perturbed = fleet.filter((d) => d.perturbation !== 'none').map((d) => `${d.id} ${d.perturbation}`);
  return `${[...sites].map(([site, n]) => `${site} ${n}`).join(', ')}; ${perturbed.length} with sensor noise or drift`;
}
