import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { DEFAULT_SERVER_USERNAME, type CredentialStore } from '../../server/broker/credential-store.ts';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { connectClient } from '../helpers/mqtt-clients.ts';
import { testLogger } from '../helpers/fleet-harness.ts';

/** A started embedded broker over an in-memory credential store whose device listing can be made to fail, counting listings. */
async function brokerOverFlakyStore(t: TestContext) {
  const inner = new InMemoryCredentialStore();
  const store = { listings: 0, down: false };
  const credentials: CredentialStore = {
    getDevice: (deviceId) => inner.getDevice(deviceId),
    listDevices: async () => {
      store.listings += 1;
      if (store.down) throw new Error('the store is down');
      return inner.listDevices();
    },
  };
  const broker = new EmbeddedBroker({ port: 0, credentials, server: { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, logger: testLogger });
  await broker.start();
  t.after(() => broker.stop());
  return { inner, store, broker };
}

test('embedded broker: a device revoked while its connect is being checked does not stay connected', async (t) => {
  const inner = new InMemoryCredentialStore();
  const secret = await inner.enroll('race-1');
  // The connect reads the device record, then is held (as by a slow password hash) while the device is revoked.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let reads = 0;
  const credentials: CredentialStore = {
    async getDevice(deviceId) {
      const device = await inner.getDevice(deviceId);
      if (deviceId === 'race-1' && reads++ === 0) await held;
      return device && { ...device };
    },
    listDevices: () => inner.listDevices(),
  };
  const broker = new EmbeddedBroker({ port: 0, credentials, server: { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, logger: testLogger });
  await broker.start();
  t.after(() => broker.stop());

  const connecting = connectClient(broker.url, { clientId: 'race-1', username: 'race-1', password: secret });
  while (reads === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  inner.revoke('race-1');
  await broker.credentialsChanged();
  release();
  const outcome = await connecting.then(
    async (client) => {
      // Connected on the record read before the revocation: it must be put out at once.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const still = client.connected;
      await client.endAsync(true);
      return still ? 'still connected' : 'closed';
    },
    (error: Error) => `refused: ${error.message}`,
  );
  assert.match(outcome, /^(refused|closed)/);
  assert.equal(broker.connectedClients, 0);
});

test('embedded broker: an enrollment costs no pass over the fleet; a revocation still puts the device out', async (t) => {
  const { inner, store, broker } = await brokerOverFlakyStore(t);
  const secret = await inner.enroll('enrolled-1');
  const before = store.listings;
  await broker.credentialsChanged({ kind: 'enrolled', deviceId: 'enrolled-1' });
  assert.equal(store.listings, before, 'no listing of every device for a new one');
  const client = await connectClient(broker.url, { clientId: 'enrolled-1', username: 'enrolled-1', password: secret });
  t.after(() => client.endAsync(true));
  inner.revoke('enrolled-1');
  // The revocation's pass fails (the store is down): the device is still connected, and the pass is
  // owed: the next change, even an enrollment, runs it.
  store.down = true;
  await assert.rejects(broker.credentialsChanged(), /the store is down/);
  store.down = false;
  assert.ok(store.listings > before, 'a revocation reads the fleet');
  assert.equal(client.connected, true);
  await inner.enroll('enrolled-2');
  await broker.credentialsChanged({ kind: 'enrolled', deviceId: 'enrolled-2' });
  const deadline = Date.now() + 5000;
  while (client.connected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(client.connected, false, 'the revoked device is put out');
});

test('embedded broker: a pass that failed is not cleared by an older pass finishing after it', async (t) => {
  const inner = new InMemoryCredentialStore();
  let listings = 0;
  let holdSecondListing: Promise<void> | undefined;
  let failFrom = Number.POSITIVE_INFINITY;
  const credentials: CredentialStore = {
    getDevice: (deviceId) => inner.getDevice(deviceId),
    listDevices: async () => {
      listings += 1;
      const call = listings;
      const snapshot = await inner.listDevices();
      if (call === 2 && holdSecondListing) await holdSecondListing;
      if (call >= failFrom) throw new Error('the store is down');
      return snapshot;
    },
  };
  const broker = new EmbeddedBroker({ port: 0, credentials, server: { username: DEFAULT_SERVER_USERNAME, password: randomBytes(18).toString('base64url') }, logger: testLogger });
  await broker.start();
  t.after(() => broker.stop());
  const secret = await inner.enroll('dev-1');
  const client = await connectClient(broker.url, { clientId: 'dev-1', username: 'dev-1', password: secret });
  t.after(() => client.endAsync(true));
  listings = 0;

  // Pass A (for some earlier change) has checked the connected clients and is held on its second
  // store read; dev-1 is revoked meanwhile, and the pass for that revocation (B) fails. A finishing
  // afterwards must not settle what B owed.
  let release!: () => void;
  holdSecondListing = new Promise<void>((resolve) => (release = resolve));
  const passA = broker.credentialsChanged();
  while (listings < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  inner.revoke('dev-1');
  failFrom = 3;
  const passB = broker.credentialsChanged();
  await new Promise((resolve) => setTimeout(resolve, 20));
  release();
  await passA;
  await assert.rejects(passB, /the store is down/);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(client.connected, true, 'still connected: the pass for its revocation failed');
  failFrom = Number.POSITIVE_INFINITY;
  await inner.enroll('dev-2');
  await broker.credentialsChanged({ kind: 'enrolled', deviceId: 'dev-2' });
  const deadline = Date.now() + 5000;
  while (client.connected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(client.connected, false, 'the owed pass ran with the next change and put dev-1 out');
});

test('embedded broker: a revocation whose pass failed is retried until the store answers, and the device is put out with no further change', async (t) => {
  const { inner, store, broker } = await brokerOverFlakyStore(t);
  const secret = await inner.enroll('dev-1');
  const client = await connectClient(broker.url, { clientId: 'dev-1', username: 'dev-1', password: secret });
  t.after(() => client.endAsync(true));

  inner.revoke('dev-1');
  store.down = true;
  const before = store.listings;
  await assert.rejects(broker.credentialsChanged(), /the store is down/);
  // Still down: retried about once a second (not in a tight loop), the device still connected meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const retries = store.listings - before - 1;
  assert.ok(retries >= 2 && retries <= 3, `retried ${retries} times in 2.5 s`);
  assert.equal(client.connected, true);
  // The store answers again; no enrollment or revocation follows, yet the device is put out.
  store.down = false;
  const deadline = Date.now() + 3000;
  while (client.connected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(client.connected, false, 'the revoked device is put out by a retry');
  // Settled: no more retries.
  const settled = store.listings;
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(store.listings, settled, 'no retries once a pass succeeded');
});

test('embedded broker: stop() cancels a pending retry of a failed pass', async (t) => {
  const { store, broker } = await brokerOverFlakyStore(t);
  store.down = true;
  await assert.rejects(broker.credentialsChanged(), /the store is down/);
  await broker.stop();
  const stopped = store.listings;
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(store.listings, stopped, 'no retry after stop()');
});
