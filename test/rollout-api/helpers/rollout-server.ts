import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseServerConfig } from '../../../server/config/server-config.ts';
import { startServer, type RunningServer } from '../../../server/app/start-server.ts';
import { createLogger } from '../../../shared/util/log.ts';
import { InMemoryFleet } from '../../rollout/in-memory-fleet.ts';
import { ADMIN_TOKEN } from '../../server/helpers/test-server.ts';
import { freshStoreLocation, type StoreEngineName } from '../../server/helpers/store-engines.ts';
import { registerVersion, testDevices } from './rollout-fixtures.ts';

export interface RolloutTestServer {
  server: RunningServer;
  fleet: InMemoryFleet;
  baseUrl: string;
  grpcAddress: string;
  request(method: string, path: string, options?: { token?: string; json?: unknown; body?: string; contentType?: string }): Promise<Response>;
}

/** An in-process server whose rollouts run against an in-memory fleet of `devices` (test-only option). */
export async function startRolloutServer(t: TestContext, options: { engine?: StoreEngineName; devices?: number } = {}): Promise<RolloutTestServer | null> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-rollout-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const location = await freshStoreLocation(t, options.engine ?? 'sqlite', dataDir);
  if (!location) return null;
  const config = parseServerConfig({
    dataDir,
    host: '127.0.0.1',
    httpPort: 0,
    grpcPort: 0,
    mqttPort: 0,
    adminToken: ADMIN_TOKEN,
    ...(location.engine === 'postgres' ? { databaseUrl: location.databaseUrl, databaseSchema: location.schema } : {}),
  });
  const fleet = new InMemoryFleet(testDevices(options.devices ?? 4));
  const server = await startServer(config, { log: createLogger('rollout-test', 'silent'), testOnlyRolloutFleet: { fleet } });
  t.after(() => server.close());
  await registerVersion(server.ctx.store, 'wine', '1');
  await registerVersion(server.ctx.store, 'wine', '2');
  await server.ctx.store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
  const baseUrl = `http://127.0.0.1:${server.port('http')}`;
  return {
    server,
    fleet,
    baseUrl,
    grpcAddress: `127.0.0.1:${server.port('grpc')}`,
    request(method, path, { token = ADMIN_TOKEN, json, body, contentType } = {}) {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      const payload = json !== undefined ? JSON.stringify(json) : body;
      if (payload !== undefined) headers['content-type'] = contentType ?? 'application/json';
      return fetch(`${baseUrl}${path}`, { method, headers, body: payload });
    },
  };
}

/** Polls GET /api/rollouts/:id until `done` holds (or fails after timeoutMs). */
export async function waitForRollout(request: RolloutTestServer['request'], id: string, done: (view: any) => boolean, timeoutMs = 15_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    const response = await request('GET', `/api/rollouts/${id}`);
    last = await response.json();
    if (done(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`rollout ${id} did not reach the expected state: ${JSON.stringify({ phase: last?.phase, stepIndex: last?.stepIndex, stage: last?.stepStage })}`);
}
