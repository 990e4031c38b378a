import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { KeyObject } from 'node:crypto';
import { Agent } from '../../agent/agent.ts';
import type { Holdout } from '../../agent/holdout.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import type { ServerConfigInput } from '../../server/config/server-config.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import { BlobProxy } from '../helpers/blob-proxy.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { makeArtifact, pushArtifact } from '../server/helpers/artifacts.ts';
import type { StoreEngineName } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { createServer as createTcpServer } from 'node:net';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { startServer } from '../../server/app/start-server.ts';
import { createLogger } from '../../shared/util/log.ts';

/**
 * The world of the rollback review: an in-process server (store, embedded aedes broker, rollout
 * controller) with real agents over MQTT, whose artifact requests go through a proxy that can
 * answer 503 for chosen blobs (a download that fails for a while), and wine@1 (the baseline,
 * active on every device) and wine@2 (the candidate) in the registry.
 */

export async function json<T = any>(response: Response): Promise<T> {
  const body = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

export interface RollbackWorld {
  server: TestServer;
  proxy: BlobProxy;
  agents: Map<string, Agent>;
  dataDir: string;
  versions: Map<string, Manifest>;
  startAgent(id: string): Promise<Agent>;
  /** SQLite only: stops the server and starts it again on the same data directory and ports, with `config` changed. */
  restart(config?: Partial<ServerConfigInput>, whileDown?: () => Promise<void>): Promise<void>;
  /** Pushes wine@`version` (signed with `key`, the server's by default). */
  push(version: string, options?: { key?: KeyObject; seed?: number }): Promise<Manifest>;
  rollout(id: string): Promise<any>;
  production(): Promise<string | null>;
  device(id: string): Promise<any>;
  /** The device's answers, oldest first: `assignmentId role vVERSION outcome (reason)`. */
  answers(deviceId: string): Promise<string[]>;
}

export async function startRollbackWorld(
  t: TestContext,
  deviceIds: readonly string[],
  options: {
    engine?: StoreEngineName;
    config?: Partial<ServerConfigInput>;
    baselineKey?: KeyObject;
    labelsOf?: (id: string) => Record<string, string>;
    /** The device's labelled holdout (then it benchmarks candidates, briefly); none by default. */
    holdoutOf?: (id: string) => Holdout | undefined;
  } = {},
): Promise<RollbackWorld | null> {
  const proxy = await BlobProxy.start(t);
  // Fixed (free) ports, so that a restart keeps the URLs the agents were enrolled with. A port
  // found free can be taken by another process before the server binds it: then pick them again.
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let ports: { httpPort: number; grpcPort: number; mqttPort: number };
  for (let attempt = 1; ; attempt++) {
    ports = { httpPort: await freePort(), grpcPort: await freePort(), mqttPort: await freePort() };
    try {
      server = await startTestServer(t, { engine: options.engine ?? 'sqlite', config: { publicUrl: proxy.url, ...ports, ...options.config } });
      break;
    } catch (error) {
      if (attempt === 5 || !/EADDRINUSE/.test(String((error as Error).message))) throw error;
    }
  }
  if (!server) return null;
  proxy.target = server.baseUrl;
  const versions = new Map<string, Manifest>();
  const push = async (version: string, { key = server.server.ctx.signingKey.privateKey, seed = Number(version) }: { key?: KeyObject; seed?: number } = {}) => {
    const artifact = await makeArtifact(t, { seed, privateKey: key, version, name: 'wine', units: 4 + Number(version) * 4 });
    await json(await pushArtifact(server, 'wine', artifact.dir, artifact.manifest));
    versions.set(version, artifact.manifest);
    return artifact.manifest;
  };
  await push('1', options.baselineKey ? { key: options.baselineKey } : {});
  await push('2');
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-rollback-'));
  const sessions = new OrtSessionCache();
  const agents = new Map<string, Agent>();
  const configs = new Map<string, AgentConfig>();
  t.after(async () => {
    await Promise.allSettled([...agents.values()].map((agent) => agent.stop()));
    await rm(dataDir, { recursive: true, force: true });
  });
  const startAgent = async (id: string) => {
    const holdout = options.holdoutOf?.(id);
    const agent = new Agent(
      {
        config: configs.get(id)!,
        dataDir: join(dataDir, id),
        mqttReconnectMs: 200,
        retryBaseDelayMs: 50,
        downloadAttempts: 3,
        assignmentRetryMs: 500,
        heartbeatIntervalMs: 500,
        ...(holdout ? { holdout, benchmark: { latencySamples: 20, throughputBatches: 2, batchSize: 8 } } : {}),
      },
      { connector: connectMqtt, sessions, clock: () => new Date(), logger: testLogger },
    );
    agents.set(id, agent);
    await agent.start();
    return agent;
  };
  const device = async (id: string) => json(await server.request('GET', `/api/devices/${id}`));
  for (const id of deviceIds) {
    configs.set(id, await json<AgentConfig>(await server.request('POST', '/api/devices', { json: { id, labels: options.labelsOf?.(id) ?? { site: 'north' } } })));
    await startAgent(id);
  }
  await json(await server.request('POST', '/api/assignments', { json: { model: 'wine', version: '1', role: 'active', deviceIds } }));
  await waitFor(async () => {
    for (const id of deviceIds) {
      const view = await device(id);
      if (!view.online || view.active?.version !== '1') return false;
    }
    return true;
  }, 20_000, 'every device runs wine@1');
  await json(await server.request('PUT', '/api/models/wine/aliases/production', { json: { version: '1' } }));
  return {
    server,
    proxy,
    agents,
    dataDir,
    versions,
    startAgent,
    async restart(config = {}, whileDown) {
      await server.server.close();
      await whileDown?.();
      const restarted = await startServer(
        parseServerConfig({ dataDir: server.dataDir, host: '127.0.0.1', adminToken: ADMIN_TOKEN, publicUrl: proxy.url, ...ports, ...options.config, ...config }),
        { log: createLogger('test-server', 'silent') },
      );
      t.after(() => restarted.close());
      server.server = restarted;
    },
    push,
    rollout: async (id) => json(await server.request('GET', `/api/rollouts/${id}`)),
    production: async () => (await server.server.ctx.store.models.getAlias('wine', 'production'))?.version ?? null,
    device,
    async answers(deviceId) {
      const rows = await server.server.ctx.store.engine.all<{ payload: string }>("SELECT payload FROM device_reports WHERE device_id = ? AND kind = 'assignment' ORDER BY received_at", [deviceId]);
      return rows.map((row) => JSON.parse(row.payload)).map((r) => `${r.assignmentId} ${r.role} v${r.version} ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`);
    },
  };
}

/** Starts a rollout of wine@2 over every `site=north` device; returns its id. */
export async function startRollout(world: RollbackWorld, steps: unknown[] = [{ setWeight: 100 }], extra: Record<string, unknown> = {}): Promise<string> {
  const spec = { model: 'wine', candidateVersion: '2', target: { matchLabels: { site: 'north' } }, steps, offline: { initialBackoff: '200ms', maxBackoff: '500ms', maxAttempts: 3 }, ...extra };
  return (await json<{ id: string }>(await world.server.request('POST', '/api/rollouts', { json: spec }))).id;
}

/** Waits until the rollout is in `phase` with no device delivery and no action left to run. */
export async function settled(world: RollbackWorld, id: string, phase: string, timeoutMs = 30_000): Promise<any> {
  await waitFor(async () => {
    const rollout = await world.rollout(id);
    return rollout.phase === phase && rollout.devices.pending === 0 && rollout.devices.retrying === 0 && rollout.pendingActions.length === 0;
  }, timeoutMs, `rollout ${id} settled in ${phase}`);
  return world.rollout(id);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
