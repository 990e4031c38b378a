import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseServerConfig, type ServerConfigInput } from '../../../server/config/server-config.ts';
import { startServer, type RunningServer, type StartServerOptions } from '../../../server/app/start-server.ts';
import { createLogger } from '../../../shared/util/log.ts';
import { freshStoreLocation, type StoreEngineName } from './store-engines.ts';
import { deferCleanup } from '../../helpers/cleanup.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  baseUrl: string;
  grpcAddress: string;
  request(method: string, path: string, options?: { token?: string | null; json?: unknown; body?: string | Uint8Array; headers?: Record<string, string> }): Promise<Response>;
}

/**
 * An in-process server on ephemeral ports with a fresh data directory and store (SQLite, or a
 * unique PostgreSQL schema). Null when the engine is missing (the test was skipped).
 */
export async function startTestServer(
  t: TestContext,
  options: { engine?: StoreEngineName; config?: Partial<ServerConfigInput>; start?: Omit<StartServerOptions, 'log'> & { log?: StartServerOptions['log'] } } = {},
): Promise<TestServer | null> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-server-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true, maxRetries: 3 }));
  const location = await freshStoreLocation(t, options.engine ?? 'sqlite', dataDir);
  if (!location) return null;
  const config = parseServerConfig({
    dataDir,
    host: '127.0.0.1',
    httpPort: 0,
    grpcPort: 0,
    mqttPort: 0,
    adminToken: ADMIN_TOKEN,
    // Measurements on a (fake) Prometheus run when due: the start-up grace has tests of its own.
    analysisStartupGraceSeconds: 0,
    ...(location.engine === 'postgres' ? { databaseUrl: location.databaseUrl, databaseSchema: location.schema } : {}),
    ...options.config,
  });
  const server = await startServer(config, { ...options.start, log: options.start?.log ?? createLogger('test-server', 'silent') });
  deferCleanup(t, () => server.close()); // before its data directory goes (cleanups run last first)
  return testServerOf(server, dataDir, config.tlsCert ? 'https' : 'http');
}

/** A TestServer over a server started by the test itself (its own config: an external broker, a shared data dir). */
export function testServerOf(server: RunningServer, dataDir: string, scheme: 'http' | 'https' = 'http'): TestServer {
  const baseUrl = `${scheme}://127.0.0.1:${server.port('http')}`;
  return {
    server,
    dataDir,
    baseUrl,
    grpcAddress: `127.0.0.1:${server.port('grpc')}`,
    request(method, path, { token = ADMIN_TOKEN, json, body, headers = {} } = {}) {
      const allHeaders: Record<string, string> = { ...headers };
      if (token !== null) allHeaders.authorization = `Bearer ${token}`;
      let payload: string | Uint8Array | undefined = body;
      if (json !== undefined) {
        payload = JSON.stringify(json);
        allHeaders['content-type'] ??= 'application/json';
      }
      return fetch(`${baseUrl}${path}`, { method, headers: allHeaders, body: payload as BodyInit | undefined });
    },
  };
}

/** Makes `server.close()` safe to call twice (a test's own close, then its after hook): the second does nothing. */
export function closeOnce(server: RunningServer): RunningServer {
  let closed = false;
  const close = server.close.bind(server);
  server.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  return server;
}
