import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KEYS_SUBDIR } from '../../server/artifacts/server-signing-key.ts';
import { buildDemoModels, type DemoArtifact, type DemoModels } from '../../server/demo/demo-models.ts';
import { loadDemoData, startSimulatedAgents, waitForActive } from '../../server/demo/demo-fleet.ts';
import { RestClient, waitFor } from '../../server/demo/rest-client.ts';
import { planFleet, type SimulatedDevice } from '../../server/demo/simulated-fleet.ts';
import type { DeviceView } from '../../server/fleet/device-view.ts';
import type { RolloutDetail } from '../../server/rollout/rollout-views.ts';
import { generateSigningKeys, loadPrivateKey, PRIVATE_KEY_FILE } from '../../shared/artifact/signing-keys.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { pino } from 'pino';
import { createLogger } from '../../shared/util/log.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import type { Agent } from '../../agent/agent.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { REPO_ROOT } from '../helpers/cli.ts';
import { MosquittoProcess } from '../helpers/mosquitto.ts';
import { freePort } from '../helpers/engines.ts';
import { PrometheusProcess } from '../helpers/prometheus.ts';

/**
 * The acceptance fleet: wine models trained and signed ONCE per test file (with a key every
 * server of the file then signs with, so the artifacts are reusable), a real `fleetprune server`
 * child process on ports chosen ahead (so a kill -9 and a restart reuse them), optionally on a
 * private Mosquitto and/or analysed through a private Prometheus, and real agents in this process.
 */

export const MODEL = 'wine';
export const DEVICES = 8;
const SEED = 7;
export const ADMIN_TOKEN = `acceptance-${randomBytes(12).toString('hex')}`;
/** The in-process agents' warnings and errors, kept (the last 100) for a failed start's message. */
const agentWarnings: string[] = [];
/**
 * Per device, the model changes its agent carried out, from its log: `downloaded` (a model fetched,
 * verified and installed) and `activating` (a model swapped into the active slot). An assignment
 * that a restarted server sends again after its first answer was lost with the killed server is
 * answered again ("already the candidate", "already the active model") without either.
 */
const modelChanges = new Map<string, { downloaded: number; activating: number }>();
const CHANGE_MESSAGES: Readonly<Record<string, 'downloaded' | 'activating'>> = { 'model verified and installed': 'downloaded', activating: 'activating' };
const log = process.env.FLEETPRUNE_LOG_LEVEL
  ? createLogger('acceptance')
  : pino(
      { name: 'acceptance', level: 'info' },
      {
        write(line: string) {
          const entry = JSON.parse(line) as { level: number; msg: string; device?: string };
          const change = CHANGE_MESSAGES[entry.msg];
          if (change && entry.device) {
            const counts = modelChanges.get(entry.device) ?? { downloaded: 0, activating: 0 };
            counts[change] += 1;
            modelChanges.set(entry.device, counts);
          }
          if (entry.level < 40) return;
          agentWarnings.push(line.trim());
          if (agentWarnings.length > 100) agentWarnings.shift();
        },
      },
    );

export interface TrainedFleet {
  dir: string;
  keyPath: string;
  models: DemoModels;
  devices: SimulatedDevice[];
}

/** Trains the general model and both ODF2NNA candidates (small nets) and plans the devices. */
export async function trainFleet(dir: string): Promise<TrainedFleet> {
  const keys = await generateSigningKeys(join(dir, 'keys'));
  const { train, holdout } = loadDemoData(MODEL, SEED);
  const models = await buildDemoModels({
    dataset: train,
    name: MODEL,
    workDir: join(dir, 'artifacts'),
    backend: await initTfjs(),
    privateKey: await loadPrivateKey(keys.privateKeyPath),
    seed: SEED,
    overrides: { units: 48, epochs: 60 },
  });
  return { dir, keyPath: keys.privateKeyPath, models, devices: planFleet(DEVICES, holdout, SEED) };
}

export interface ServerArgs {
  dataDir: string;
  ports: { http: number; grpc: number; mqtt: number };
  extraArgs: string[];
  env: Record<string, string>;
}

/** `node bin/fleetprune.js server …` as a child process. */
export class ServerChild {
  #stderr = '';

  private constructor(
    readonly child: ChildProcess,
    readonly args: ServerArgs,
  ) {}

  static async start(args: ServerArgs): Promise<ServerChild> {
    const child = spawn(
      process.execPath,
      ['bin/fleetprune.js', 'server', '--data-dir', args.dataDir, '--host', '127.0.0.1', '--http-port', String(args.ports.http), '--grpc-port', String(args.ports.grpc), ...(args.extraArgs.includes('--mqtt-url') ? [] : ['--mqtt-port', String(args.ports.mqtt)]), ...args.extraArgs],
      { cwd: REPO_ROOT, env: { ...process.env, FLEETPRUNE_ADMIN_TOKEN: ADMIN_TOKEN, FLEETPRUNE_LOG_LEVEL: 'warn', ...args.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new ServerChild(child, args);
    child.stderr!.on('data', (chunk: Buffer) => (server.#stderr = (server.#stderr + chunk.toString()).slice(-20_000)));
    let stdout = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start within 60 s: ${server.#stderr}`)), 60_000);
      const exited = (code: number | null) => (clearTimeout(timer), reject(new Error(`server exited with ${code}: ${server.#stderr}`)));
      child.once('exit', exited);
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (!/^listening http=\d+/m.test(stdout)) return;
        clearTimeout(timer);
        child.off('exit', exited);
        resolve();
      });
    });
    return server;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** kill -9, and wait until the process is gone. */
  kill9(): Promise<void> {
    return this.#signal('SIGKILL');
  }

  stop(): Promise<void> {
    return this.#signal('SIGTERM');
  }

  #signal(signal: NodeJS.Signals): Promise<void> {
    if (!this.alive) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill(signal);
    });
  }
}

export interface FleetOptions {
  trained: TrainedFleet;
  /** Where this run's server and devices keep their data. */
  dir: string;
  /** A mosquitto binary: run against a private Mosquitto instead of the embedded broker. */
  mosquittoBinary?: string;
  /** A prometheus binary: a private Prometheus scrapes the server every second and analyses query it. */
  prometheusBinary?: string;
}

/** One run's fleet: the broker, the server child, the agents, and what the tests read. */
export class AcceptanceFleet {
  server!: ServerChild;
  agents: Agent[] = [];
  versions = { general: '', good: '', overPruned: '' };
  mosquitto?: MosquittoProcess;
  prometheus?: PrometheusProcess;
  readonly api: RestClient;
  readonly sessions = new OrtSessionCache();
  #serverArgs!: ServerArgs;

  private constructor(
    readonly options: FleetOptions,
    readonly ports: ServerArgs['ports'],
  ) {
    this.api = new RestClient(`http://127.0.0.1:${ports.http}`, ADMIN_TOKEN);
  }

  get httpUrl(): string {
    return this.api.baseUrl;
  }

  get grpcTarget(): string {
    return `127.0.0.1:${this.ports.grpc}`;
  }

  get pilot(): string[] {
    return this.options.trained.devices.filter((d) => d.labels.pilot === 'true').map((d) => d.id);
  }

  /** Brokers, Prometheus, the server; registers the three versions; enrolls and starts the agents; baseline everywhere. */
  static async start(options: FleetOptions): Promise<AcceptanceFleet> {
    // Fixed ports (Prometheus scrapes the HTTP one, a restart binds the same ones): free when
    // picked, but another test file may bind one before the server does. Then everything starts
    // again on new ones.
    for (let attempt = 1; ; attempt++) {
      const ports = { http: await freePort(), grpc: await freePort(), mqtt: await freePort() };
      const fleet = new AcceptanceFleet(options, ports);
      try {
        await fleet.#start();
        return fleet;
      } catch (error) {
        await fleet.close();
        if (attempt === 3 || !errorMessage(error).includes('EADDRINUSE')) throw error;
      }
    }
  }

  async #start(): Promise<void> {
    const { trained, dir } = this.options;
    const dataDir = join(dir, 'server');
    // The server signs nothing here, but agents verify artifacts with its public key: give it the file's key.
    await mkdir(join(dataDir, KEYS_SUBDIR), { recursive: true });
    await copyFile(trained.keyPath, join(dataDir, KEYS_SUBDIR, PRIVATE_KEY_FILE));
    const extraArgs: string[] = [];
    const env: Record<string, string> = {};
    if (this.options.mosquittoBinary) {
      const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(this.options.mosquittoBinary, dir);
      this.mosquitto = mosquitto;
      extraArgs.push('--mqtt-url', mosquitto.url, '--mosquitto-dir', mosquitto.authDir, '--mosquitto-pid-file', pidFile);
      env.FLEETPRUNE_MQTT_PASSWORD = password;
    }
    if (this.options.prometheusBinary) {
      this.prometheus = await PrometheusProcess.startScraping(this.options.prometheusBinary, 'fleetprune', [`127.0.0.1:${this.ports.http}`]);
      extraArgs.push('--prometheus-url', this.prometheus.url);
    }
    this.#serverArgs = { dataDir, ports: this.ports, extraArgs, env };
    this.server = await ServerChild.start(this.#serverArgs);

    this.versions = {
      general: await this.push(trained.models.general),
      good: await this.push(trained.models.good),
      overPruned: await this.push(trained.models.overPruned),
    };
    this.agents = await startSimulatedAgents({
      api: this.api,
      devices: trained.devices,
      dataDir: join(dir, 'devices'),
      sessions: this.sessions,
      log,
      heartbeatIntervalMs: 1000,
      benchmark: { latencySamples: 60, throughputBatches: 2, batchSize: 32 },
      mqttReconnectMs: 250,
      concurrency: 4,
    });
    await this.api.post('/assignments', { model: MODEL, version: this.versions.general, role: 'active', allDevices: true });
    try {
      await waitForActive(this.api, MODEL, this.versions.general, DEVICES, 60_000, 200);
    } catch (error) {
      throw new Error(`${errorMessage(error)}\n${await this.diagnostics()}`);
    }
    await this.api.request('PUT', `/models/${MODEL}/aliases/production`, { version: this.versions.general });
  }

  /** Uploads an artifact's files as blobs and registers its manifest, as `fleetprune models push` does. */
  async push(artifact: DemoArtifact): Promise<string> {
    for (const [path, file] of Object.entries(artifact.manifest.files)) {
      const response = await fetch(`${this.httpUrl}/api/blobs/${file.sha256}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': String(file.bytes) },
        body: createReadStream(join(artifact.dir, path)) as unknown as BodyInit,
        duplex: 'half',
      } as RequestInit);
      if (!response.ok) throw new Error(`PUT blob ${path}: ${response.status} ${await response.text()}`);
    }
    const version = await this.api.post<{ version: string }>(`/models/${MODEL}/versions`, { manifest: artifact.manifest });
    return version.version;
  }

  /** kill -9 the server, then start it again on the same ports and data directory. */
  async killAndRestart(): Promise<void> {
    await this.server.kill9();
    this.server = await ServerChild.start(this.#serverArgs);
  }

  devices(): Promise<DeviceView[]> {
    return this.api.get<{ devices: DeviceView[] }>('/devices').then((body) => body.devices);
  }

  async production(): Promise<string | null> {
    try {
      return (await this.api.get<{ version: string }>(`/models/${MODEL}/versions/production`)).version;
    } catch (error) {
      if (/ 404 /.test(String(error))) return null;
      throw error;
    }
  }

  rollout(id: string): Promise<RolloutDetail> {
    return this.api.get<RolloutDetail>(`/rollouts/${id}`);
  }

  async startRollout(spec: Record<string, unknown>): Promise<string> {
    return (await this.api.post<{ id: string }>('/rollouts', spec)).id;
  }

  waitRollout(id: string, what: string, done: (rollout: RolloutDetail) => boolean, timeoutMs = 60_000): Promise<RolloutDetail> {
    return waitFor(`rollout ${id}: ${what}`, async () => {
      const rollout = await this.rollout(id);
      if (done(rollout)) return rollout;
      if (rollout.terminal) throw new Error(`rollout ${id} ended ${rollout.phase} (${rollout.outcome?.reason}) while waiting for ${what}`);
      return undefined;
    }, timeoutMs, 150);
  }

  waitActiveEverywhere(version: string, timeoutMs = 30_000): Promise<DeviceView[]> {
    return waitForActive(this.api, MODEL, version, DEVICES, timeoutMs, 150);
  }

  /** Per device: the models its agent downloaded and activated so far (see modelChanges; not counted under FLEETPRUNE_LOG_LEVEL). */
  agentModelChanges(): Map<string, { downloaded: number; activating: number }> {
    return new Map(this.agents.map((agent) => [agent.deviceId, { ...(modelChanges.get(agent.deviceId) ?? { downloaded: 0, activating: 0 }) }]));
  }

  /** Per device: how many assignments it handled with each outcome (installed, activated, rolled-back…). */
  async agentOutcomes(): Promise<Map<string, Record<string, number>>> {
    const result = new Map<string, Record<string, number>>();
    for (const agent of this.agents) {
      const counts: Record<string, number> = {};
      for (const value of (await agent.metrics.assignments.get()).values) counts[String(value.labels.outcome)] = value.value;
      result.set(agent.deviceId, counts);
    }
    return result;
  }

  /** What the devices, the server, Mosquitto and the agents said: for a failure's message. */
  async diagnostics(): Promise<string> {
    const devices = await this.devices().then(
      (list) => list.map((d) => `${d.id} online=${d.online} active=${d.active?.version ?? '-'} candidate=${d.candidate?.version ?? '-'}`).join('\n'),
      (error: unknown) => `cannot list devices: ${errorMessage(error)}`,
    );
    const tail = (text: string | undefined) => (text ? text.slice(-4000) : '(nothing)');
    return [
      `devices:\n${devices}`,
      `server stderr:\n${tail(this.server?.stderr)}`,
      ...(this.mosquitto ? [`mosquitto stderr:\n${tail(this.mosquitto.stderr)}`] : []),
      `agent warnings:\n${tail(agentWarnings.join('\n'))}`,
    ].join('\n');
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.agents.map((agent) => agent.stop()));
    await this.server?.stop();
    await this.prometheus?.stop();
    await this.mosquitto?.stop();
  }
}

/**
 * The test rollout: the pilot devices, a relative analysis, half the fleet, another analysis,
 * everyone. One-second intervals. The relative checks are accuracy and error rate with their
 * documented defaults; p95 latency is left out because every agent benchmarks in this one process
 * on shared cores, where a candidate measured while others run looks several times slower (seen:
 * 4.6 ms vs 0.77 ms, a significant "failure" of a smaller network).
 */
export function acceptanceSpec(candidateVersion: string, options: { minSamples?: number; initialDelay?: string } = {}): Record<string, unknown> {
  const relative = (name: string, metric: string, extra: Record<string, unknown> = {}) => ({
    name,
    interval: '1s',
    // Long enough for the pilot's benchmark reports to be ingested (and scraped by Prometheus).
    initialDelay: options.initialDelay ?? '3s',
    count: 2,
    ...(options.minSamples ? { minSamples: options.minSamples } : {}),
    relative: { metric, window: '5m', ...extra },
  });
  const analysis = {
    analysis: { metrics: [relative('accuracy', 'accuracy'), relative('error-rate', 'error_rate')] },
  };
  return {
    apiVersion: 'fleetprune/v1',
    kind: 'Rollout',
    model: MODEL,
    candidateVersion,
    target: { matchLabels: {} },
    steps: [{ selector: { matchLabels: { pilot: 'true' } } }, analysis, { setWeight: 50 }, analysis, { setWeight: 100 }],
    // A device away is retried for about a minute before the rollout goes on without it. After
    // the kill -9 (the embedded broker dies with the server) every agent reconnects to the
    // restarted server, which on a loaded machine takes longer than a few seconds; left behind,
    // a device would get the candidate only when activated everywhere, never installed as one.
    offline: { initialBackoff: '1s', maxBackoff: '2s', maxAttempts: 30 },
  };
}
