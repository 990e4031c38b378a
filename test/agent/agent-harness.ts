import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Agent, type AgentDependencies, type AgentOptions } from '../../agent/agent.ts';
import { connectMqtt } from '../../agent/mqtt-link.ts';
import { OrtSessionCache, type SessionCache } from '../../agent/session-cache.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { testLogger } from '../helpers/fleet-harness.ts';
import type { AgentWorld } from './agent-fixtures.ts';

export interface RunningAgent {
  agent: Agent;
  dataDir: string;
  url: string;
  predict(body: unknown): Promise<{ status: number; json: any }>;
  /** Stops the agent and its HTTP server now (also done after the test). */
  stop(): Promise<void>;
}

/** Starts a real in-process Agent (real MQTT, onnxruntime, files) with its HTTP API on an ephemeral port; `logger`, `freeSpace` and `connector` replace those dependencies. */
export async function startAgent(
  t: TestContext,
  world: AgentWorld,
  deviceId: string,
  options: Partial<AgentOptions> & { sessions?: SessionCache; dataDir?: string } & Partial<Pick<AgentDependencies, 'logger' | 'freeSpace' | 'connector'>> = {},
): Promise<RunningAgent> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), `fleetprune-agent-${deviceId}-`)));
  const config = options.config ?? (await world.config(deviceId, { site: 'osaka' }));
  const { sessions, logger, freeSpace, connector, ...agentOptions } = options;
  const agent = new Agent(
    { config, dataDir, holdout: world.holdout, benchmark: { latencySamples: 50, throughputBatches: 5, batchSize: 64 }, mqttReconnectMs: 200, retryBaseDelayMs: 100, ...agentOptions },
    { connector: connector ?? connectMqtt, sessions: sessions ?? new OrtSessionCache(), clock: () => new Date(), logger: logger ?? testLogger, ...(freeSpace ? { freeSpace } : {}) },
  );
  // A start that is refused stops the agent, as the CLI does: else its data dir lock outlives the test.
  await agent.start().catch(async (error: unknown) => {
    await agent.stop();
    throw error;
  });
  const server: Server = await new Promise((resolve) => {
    const listening = agent.app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await agent.stop();
    })());
  // Cleanups run last first: the agent stops before its files go, and before a disk the test
  // mounted for it is unmounted (test/helpers/tmpfs.ts); writes after a lazy unmount would land
  // in the directory underneath.
  if (!options.dataDir) deferCleanup(t, () => rm(dataDir, { recursive: true, force: true }));
  deferCleanup(t, stop);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    agent,
    dataDir,
    url,
    stop,
    async predict(body) {
      const response = await fetch(`${url}/v1/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
      return { status: response.status, json: await response.json() };
    },
  };
}

// Kept importable from here, where the agent tests have always found it.
export { recordingLogger } from '../helpers/recording-logger.ts';
