import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { CredentialStore, DeviceCredential } from '../../server/broker/credential-store.ts';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { PASSWORD_FILE, writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { InMemoryCredentialStore } from '../../server/broker/in-memory-credential-store.ts';
import { hashPassword } from '../../server/broker/password-hash.ts';
import { testLogger } from '../helpers/fleet-harness.ts';

/**
 * A credential store whose first listing is held until the test releases it, returning what the
 * store held when it was asked: the stale read of a slow rewrite.
 */
class HeldFirstListing implements CredentialStore {
  readonly devices: DeviceCredential[] = [];
  #release: (() => void) | undefined;
  #held = new Promise<void>((resolve) => (this.#release = resolve));
  #calls = 0;

  release(): void {
    this.#release!();
  }

  async getDevice(deviceId: string): Promise<DeviceCredential | undefined> {
    return this.devices.find((d) => d.deviceId === deviceId);
  }

  async listDevices(): Promise<DeviceCredential[]> {
    const snapshot = this.devices.slice();
    if (this.#calls++ === 0) await this.#held;
    return snapshot;
  }
}

/** A fresh directory for the auth files, removed after the test. */
async function authDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-auth-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An ExternalBroker that writes Mosquitto's auth files into `dir`; each reload reports the users of the password file. */
function authWritingBroker(t: TestContext, dir: string, store: CredentialStore, onReload: (users: string[]) => void): ExternalBroker {
  const broker = new ExternalBroker({
    url: 'mqtt://127.0.0.1:1',
    server: { username: 'fleetprune-server', password: 'server-secret' },
    credentials: store,
    logger: testLogger,
    mosquittoAuth: {
      dir,
      reload: async () => {
        const file = await readFile(join(dir, PASSWORD_FILE), 'utf8');
        onReload(file.split('\n').filter(Boolean).map((line) => line.split(':')[0]!));
      },
    },
  });
  t.after(() => broker.stop());
  return broker;
}

test('Mosquitto password/ACL rewrites are serialized: a slow stale rewrite cannot land after a newer one', async (t) => {
  const dir = await authDir(t);
  const hash = await hashPassword('device-secret');
  const store = new HeldFirstListing();
  const reloads: string[][] = [];
  const broker = authWritingBroker(t, dir, store, (users) => reloads.push(users));

  // Device A enrolls; its rewrite reads the store (A only) and stalls.
  store.devices.push({ deviceId: 'device-a', passwordHash: hash, revoked: false });
  const first = broker.credentialsChanged();
  await new Promise((resolve) => setImmediate(resolve));
  // Device B enrolls while the first rewrite is still in flight.
  store.devices.push({ deviceId: 'device-b', passwordHash: hash, revoked: false });
  const second = broker.credentialsChanged();
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  store.release();
  await Promise.all([first, second]);

  const users = (await readFile(join(dir, PASSWORD_FILE), 'utf8')).split('\n').filter(Boolean).map((line) => line.split(':')[0]);
  assert.deepEqual(users.sort(), ['device-a', 'device-b', 'fleetprune-server'], 'the newest enrollment is in the password file');
  assert.deepEqual(
    reloads.map((names) => names.slice().sort()),
    [
      ['device-a', 'fleetprune-server'],
      ['device-a', 'device-b', 'fleetprune-server'],
    ],
    'Mosquitto reloaded after each rewrite, in enrollment order',
  );
});

test('after a burst of enrollments Mosquitto is told to reload once more (a SIGHUP landing during its reload is lost)', async (t) => {
  const dir = await authDir(t);
  const hash = await hashPassword('device-secret');
  const store = new HeldFirstListing();
  store.release();
  const reloads: { at: number; users: number }[] = [];
  const broker = authWritingBroker(t, dir, store, (users) => reloads.push({ at: Date.now(), users: users.length }));
  for (const id of ['burst-a', 'burst-b', 'burst-c']) {
    store.devices.push({ deviceId: id, passwordHash: hash, revoked: false });
    await broker.credentialsChanged();
  }
  const last = Date.now();
  assert.equal(reloads.length, 3, 'one reload per rewrite');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(reloads.length, 4, 'one trailing reload for the whole burst');
  assert.ok(reloads[3]!.at - last >= 900, 'a second after the last change');
  assert.equal(reloads[3]!.users, 4, 'it reads every device of the burst (and the server)');
});

test('concurrent enrollments share the rewrite that waits its turn: a burst of 20 costs two rewrites, and none is left out', async (t) => {
  const dir = await authDir(t);
  const hash = await hashPassword('device-secret');
  const store = new HeldFirstListing();
  const reloads: string[][] = [];
  const broker = authWritingBroker(t, dir, store, (users) => reloads.push(users));
  // The first rewrite reads the store (one device) and stalls; 19 more enrol meanwhile.
  store.devices.push({ deviceId: 'bulk-0', passwordHash: hash, revoked: false });
  const calls = [broker.credentialsChanged()];
  await new Promise((resolve) => setImmediate(resolve));
  for (let i = 1; i < 20; i++) {
    store.devices.push({ deviceId: `bulk-${i}`, passwordHash: hash, revoked: false });
    calls.push(broker.credentialsChanged());
  }
  store.release();
  await Promise.all(calls);
  assert.equal(reloads.length, 2, 'the stalled rewrite, then one for the 19 that came meanwhile');
  assert.equal(reloads[1]!.length, 21, 'the second read every device (and the server)');
});

test('a rewrite that failed is tried again shortly, not only at the next change', async (t) => {
  const dir = await authDir(t);
  const store = new HeldFirstListing();
  store.release();
  let reloads = 0;
  let failing = true;
  const broker = authWritingBroker(t, dir, store, () => {
    reloads += 1;
    if (failing) throw new Error('mosquitto is not running');
  });
  store.devices.push({ deviceId: 'late-1', passwordHash: await hashPassword('device-secret'), revoked: false });
  await assert.rejects(broker.credentialsChanged(), /mosquitto is not running/);
  failing = false;
  const before = reloads;
  // Due 1 s after the failure; waited for (not slept a fixed 1.5 s, which a loaded machine's late timers missed).
  const deadline = Date.now() + 15_000;
  while (reloads === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(reloads > before, 'the rewrite and reload ran again by themselves, with no other change');
});

test('the password and ACL files are readable by their owner only (0600)', async (t) => {
  const dir = await authDir(t);
  const store = new InMemoryCredentialStore();
  await store.enroll('dev-1');
  const { passwordFile, aclFile } = await writeMosquittoAuthFiles(dir, { username: 'fleetprune-server', password: 'server-password' }, store);
  for (const file of [passwordFile, aclFile]) assert.equal((await stat(file)).mode & 0o777, 0o600, file);
  assert.match(await readFile(aclFile, 'utf8'), /^user dev-1$/m);
});

test("requests that fail in between (each revocation or enrolment tries a rewrite) do not push the background retry's backoff out", async (t) => {
  const dir = await authDir(t);
  const store = new HeldFirstListing();
  store.release();
  let attempts = 0;
  let failing = true;
  let reloads = 0;
  const broker = authWritingBroker(t, dir, store, () => {
    attempts += 1;
    reloads += failing ? 0 : 1;
    if (failing) throw new Error('mosquitto is not running');
  });
  // Eight requests fail in a row: the background retry is due 1 s after the first.
  for (let i = 0; i < 8; i++) await assert.rejects(broker.credentialsChanged(), /mosquitto is not running/);
  const requests = attempts;
  const deadline = Date.now() + 10_000;
  while (attempts === requests && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(attempts, requests + 1, 'the first background retry ran and failed');
  failing = false;
  // The second background retry comes 2 s later (its own second round), not at the 30 s cap that
  // nine failures in a row would give if every failed request counted as a round.
  const fixedAt = Date.now();
  while (reloads === 0 && Date.now() - fixedAt < 6_000) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(reloads, 1, 'the background retry rewrote and reloaded within 6 s');
  assert.equal(broker.credentialsProblem(), null);
});
