import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { TrustedKeys } from '../../server/artifacts/trusted-keys.ts';
import type { Broker } from '../../server/broker/broker.ts';
import { AssignmentPublisher } from '../../server/fleet/assignment-publisher.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { RegistryService } from '../../server/registry/registry-service.ts';
import { createLogger } from '../../shared/util/log.ts';
import { registerVersion } from '../rollout-api/helpers/rollout-fixtures.ts';
import { withFreshStore } from '../server/helpers/store-engines.ts';

/**
 * A server on an ephemeral HTTP port knows its URL (the one an assignment's download names) only
 * once its listener is bound, after its modules start; the rollout leader elected meanwhile drives
 * the rollouts it recovers, and a revert it sent then failed with "the public URL is not known
 * before the HTTP listener is bound", logged with its stack, and was retried later. A recording
 * made before the URL is known now waits for it.
 */
test('an assignment recorded before the server knows its URL waits for it, and names it', async (t) => {
  await withFreshStore(t, 'sqlite', async (store) => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    await registerVersion(store, 'wine', '1', privateKey);
    const fleet = new FleetStore(store);
    await fleet.repos.devices.insert({ id: 'dev-1', labels: {}, secretHash: 'h', tokenId: 't', enrolledAt: new Date().toISOString(), enrolledBy: 't' });
    let url: string | null = null;
    let bound = () => {};
    const publisher = new AssignmentPublisher({
      fleet,
      broker: {} as Broker,
      serverUrl: () => {
        if (url === null) throw new Error('the public URL is not known before the HTTP listener is bound');
        return url;
      },
      serverUrlKnown: new Promise<void>((resolve) => (bound = resolve)),
      log: createLogger('assignment-url-test', 'silent'),
      signingKey: privateKey,
      trustedKeys: await TrustedKeys.load([], publicKey),
    });
    const version = await new RegistryService(store).resolve('wine', '1');
    let settled = false;
    const recording = publisher.record({ id: 'rollout-1-revert-1', version, role: 'active', deviceIds: ['dev-1'], actor: 'rollout', action: 'rollout.revert', restoring: true }).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(settled, false, 'it waits for the URL');
    assert.equal((await fleet.repos.devices.get('dev-1'))?.retainedAssignment ?? null, null, 'nothing recorded meanwhile');
    url = 'http://127.0.0.1:45123';
    bound();
    const recorded = await recording;
    assert.equal(recorded.get('dev-1')?.url.startsWith('http://127.0.0.1:45123/'), true, recorded.get('dev-1')?.url);
    assert.equal((await fleet.repos.devices.get('dev-1'))?.retainedAssignment?.id, 'rollout-1-revert-1');
  });
});
