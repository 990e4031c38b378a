import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dataset } from '../../shared/data/dataset.ts';
import { loadDatasetFile } from '../../shared/data/dataset.ts';
import { SHIPPED_DATASETS, shippedDatasetPath, type ShippedDatasetName } from '../../shared/datasets/index.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import type { Logger } from '../../shared/util/log.ts';
import { Agent } from '../../agent/agent.ts';
import { Holdout } from '../../agent/holdout.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import type { BenchmarkSettings } from '../../agent/model-benchmark.ts';
import type { SessionCache } from '../../agent/session-cache.ts';
import type { DeviceView } from '../fleet/device-view.ts';
import { RestClient, waitFor } from './rest-client.ts';
import { holdOutRows } from './simulated-fleet.ts';

/**
 * The pieces of the demo that tests and benchmarks reuse: the shipped data split into training
 * rows and device holdouts, enrolling simulated devices over REST and running the real agent
 * code for each in this process, and waiting until the fleet runs a version.
 */

/** A shipped dataset, with `fraction` of its rows (stratified) held out for the devices. */
export function loadDemoData(name: ShippedDatasetName, seed: number, fraction = 0.5): { train: Dataset; holdout: Dataset } {
  const shipped = SHIPPED_DATASETS[name];
  const dataset = loadDatasetFile(shippedDatasetPath(name), { label: shipped.label });
  return holdOutRows(dataset, fraction, seed);
}

/** Settings of the demo's simulated agents; tests and benchmarks shrink them. */
export const DEMO_AGENT_SETTINGS = {
  heartbeatIntervalMs: 2000,
  benchmark: { latencySamples: 200, throughputBatches: 5, batchSize: 64 } satisfies BenchmarkSettings,
};

export interface SimulatedAgentsOptions {
  api: RestClient;
  devices: readonly { id: string; labels: Record<string, string>; holdout?: Dataset }[];
  /** Broker URL written into each agent config (default: what the server answers). */
  brokerUrl?: string;
  serverUrl?: string;
  /** Each device keeps its slots and outbox under <dataDir>/<device id>. */
  dataDir: string;
  /** One onnxruntime session per model, shared by every agent. */
  sessions: SessionCache;
  log: Logger;
  heartbeatIntervalMs?: number;
  benchmark?: BenchmarkSettings;
  mqttReconnectMs?: number;
  /** Devices enrolled and started at once (default 1, in order). */
  concurrency?: number;
}

/**
 * Enrolls each device with POST /api/devices and starts a real `Agent` for it in this process.
 * On failure the agents already started are stopped.
 */
export async function startSimulatedAgents(options: SimulatedAgentsOptions): Promise<Agent[]> {
  const agents: Agent[] = [];
  await mkdir(options.dataDir, { recursive: true });
  const startOne = async (device: SimulatedAgentsOptions['devices'][number]) => {
    const body: Record<string, unknown> = { id: device.id, labels: device.labels };
    if (options.brokerUrl) body.brokerUrl = options.brokerUrl;
    if (options.serverUrl) body.serverUrl = options.serverUrl;
    const config = await options.api.post<AgentConfig>('/devices', body);
    const agent = new Agent(
      {
        config,
        dataDir: join(options.dataDir, device.id),
        holdout: device.holdout && Holdout.fromDataset(device.holdout, `${device.id}'s holdout`),
        heartbeatIntervalMs: options.heartbeatIntervalMs ?? DEMO_AGENT_SETTINGS.heartbeatIntervalMs,
        benchmark: options.benchmark ?? DEMO_AGENT_SETTINGS.benchmark,
        mqttReconnectMs: options.mqttReconnectMs,
      },
      { connector: connectMqtt, sessions: options.sessions, clock: () => new Date(), logger: options.log.child({ device: device.id }) },
    );
    agents.push(agent);
    await agent.start();
  };
  try {
    const queue = [...options.devices];
    const workers = Array.from({ length: Math.max(1, options.concurrency ?? 1) }, async () => {
      for (let device = queue.shift(); device; device = queue.shift()) await startOne(device);
    });
    await Promise.all(workers);
    return agents;
  } catch (error) {
    await Promise.allSettled(agents.map((agent) => agent.stop()));
    throw error;
  }
}

/** Waits until at least `count` devices report `model@version` active (GET /api/devices). */
export async function waitForActive(api: RestClient, model: string, version: string, count: number, timeoutMs = 120_000, intervalMs = 500): Promise<DeviceView[]> {
  return waitFor(
    `${count} devices to activate ${model}@${version}`,
    async () => {
      const devices = await api.allDevices<DeviceView>();
      const done = devices.filter((d) => d.active?.model === model && d.active.version === version).length;
      return done >= count ? devices : undefined;
    },
    timeoutMs,
    intervalMs,
  );
}
