import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { ServerContext } from '../../server/app/server-context.ts';
import { loadOrCreateServerKey } from '../../server/artifacts/server-signing-key.ts';
import { TokenService } from '../../server/auth/token-service.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { createFleet } from '../../server/fleet/fleet-module.ts';
import { activationTaken } from '../helpers/taken-activation.ts';
import { ServerMetrics } from '../../server/metrics/server-metrics.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import type { Store } from '../../server/store/store.ts';
import { createLogger } from '../../shared/util/log.ts';
import { makeArtifact } from '../server/helpers/artifacts.ts';
import { freshStoreLocation, type StoreEngineName } from '../server/helpers/store-engines.ts';

/**
 * The fleet module on a fresh store of `engine` (embedded broker, no device connected): iris 1 and
 * 2 registered and signed by the server's key, devices dev-1 and dev-2 enrolled and assigned iris 1
 * (command op-baseline). Undefined when the engine is not available (the test then returns).
 */
export async function irisFleetWorld(t: TestContext, engine: StoreEngineName, name: string) {
  const location = await freshStoreLocation(t, engine);
  if (!location) return undefined;
  const dataDir = await mkdtemp(join(tmpdir(), `fleetprune-${name}-`));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const store: Store = await openStore(location);
  t.after(() => store.close());
  const signingKey = await loadOrCreateServerKey(dataDir, async () => 0);
  const registry = new RegistryService(store);
  const log = createLogger(`${name}-test`, 'silent');
  const ctx = { config: parseServerConfig({ dataDir, host: '127.0.0.1', mqttPort: 0 }), log, store, registry, signingKey, metrics: new ServerMetrics(), tokens: new TokenService(store), publicUrl: () => 'http://127.0.0.1:9' } as unknown as ServerContext;
  const fleet = createFleet(ctx);
  await fleet.module.start!();
  t.after(() => fleet.module.stop!());
  for (const [version, seed] of [['1', 1], ['2', 2]] as const) {
    const artifact = await makeArtifact(t, { seed, privateKey: signingKey.privateKey, version });
    await registry.register({ model: 'iris', manifest: artifact.manifest, actor: 'test' });
  }
  for (const id of ['dev-1', 'dev-2']) await fleet.devices.enroll({ id, labels: {} }, 'test');
  await fleet.fleetPort.assign({ commandId: 'op-baseline', model: 'iris', version: '1', role: 'active', deviceIds: ['dev-1', 'dev-2'] });
  await activationTaken(store, ['dev-1', 'dev-2']); // no device connects here
  return { store, registry, fleet, signingKey, log, dataDir };
}
