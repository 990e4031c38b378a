import type { TestContext } from 'node:test';
import type { RunningServer } from '../../../server/app/start-server.ts';
import { InMemoryFleet } from '../../rollout/in-memory-fleet.ts';
import { ADMIN_TOKEN, startTestServer } from '../../server/helpers/test-server.ts';
import type { StoreEngineName } from '../../server/helpers/store-engines.ts';
import type { ServerConfigInput } from '../../../server/config/server-config.ts';
import { registerVersion, testDevices } from './rollout-fixtures.ts';

export interface RolloutTestServer {
  server: RunningServer;
  fleet: InMemoryFleet;
  baseUrl: string;
  grpcAddress: string;
  request(method: string, path: string, options?: { token?: string; json?: unknown; body?: string; contentType?: string }): Promise<Response>;
}

/** An in-process server whose rollouts run against an in-memory fleet of `devices` (test-only option). */
export async function startRolloutServer(t: TestContext, options: { engine?: StoreEngineName; devices?: number; config?: Partial<ServerConfigInput> } = {}): Promise<RolloutTestServer | null> {
  const fleet = new InMemoryFleet(testDevices(options.devices ?? 4));
  const base = await startTestServer(t, { engine: options.engine, start: { testOnlyRolloutFleet: { fleet } }, ...(options.config ? { config: options.config } : {}) });
  if (!base) return null;
  const { server } = base;
  await registerVersion(server.ctx.store, 'wine', '1');
  await registerVersion(server.ctx.store, 'wine', '2');
  await server.ctx.store.models.setAlias({ model: 'wine', alias: 'production', version: '1', updatedAt: new Date().toISOString(), updatedBy: 'test' });
  return {
    server,
    fleet,
    baseUrl: base.baseUrl,
    grpcAddress: base.grpcAddress,
    request(method, path, { token = ADMIN_TOKEN, json, body, contentType } = {}) {
      const headers: Record<string, string> = {};
      if (contentType ?? body !== undefined) headers['content-type'] = contentType ?? 'application/json';
      return base.request(method, path, { token, json, body, headers });
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
