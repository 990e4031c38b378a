import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { publishAssignment } from '../../server/fleet/fleet-publisher.ts';
import { hashPassword, verifyPassword } from '../../server/broker/password-hash.ts';
import { renderAclFile } from '../../server/broker/mosquitto-auth-files.ts';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { assignmentTopic, reportsTopic } from '../../shared/protocol/topics.ts';
import { engineMissing, findExecutable } from '../helpers/engines.ts';
import { collectMessages, connectClient, waitFor } from '../helpers/mqtt-clients.ts';
import { BROKER_KINDS, harnessFor } from './broker-harnesses.ts';

const SIGNER = { privateKey: generateKeyPairSync('ed25519').privateKey };

const ACCESS = { url: 'http://127.0.0.1:9', token: 't', publicKey: generateKeyPairSync('ed25519').publicKey };
const SHA = 'b'.repeat(64);

function assignmentReport(deviceId: string) {
  return JSON.stringify({
    schema: 1, id: newMessageId(), kind: 'assignment', deviceId, createdAt: new Date().toISOString(), assignmentId: newMessageId(),
    outcome: 'installed', role: 'candidate', model: 'm', version: '1', sha256: SHA, reason: null,
  });
}

test('password hashes use the Mosquitto $7$ format in both directions', async (t) => {
  const encoded = await hashPassword('s3cret');
  assert.match(encoded, /^\$7\$1000\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$/);
  assert.equal(await verifyPassword('s3cret', encoded), true);
  assert.equal(await verifyPassword('s3creT', encoded), false);
  assert.equal(await verifyPassword('s3cret', 'garbage'), false);
  if (!findExecutable(['mosquitto_passwd'])) return engineMissing(t, 'Mosquitto', 'mosquitto_passwd is not installed (Debian package mosquitto)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-pw-'));
  try {
    execFileSync('mosquitto_passwd', ['-c', '-b', join(dir, 'pw'), 'alice', 'from-mosquitto']);
    const line = (await readFile(join(dir, 'pw'), 'utf8')).trim();
    assert.equal(await verifyPassword('from-mosquitto', line.slice('alice:'.length)), true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the generated ACL file grants a device exactly its own topics', () => {
  const acl = renderAclFile({ username: 'srv', password: 'x' }, [
    { deviceId: 'dev-a', passwordHash: 'h', revoked: false },
    { deviceId: 'dev-r', passwordHash: 'h', revoked: true },
  ]);
  assert.match(acl, /user srv\ntopic readwrite fleetprune\/v1\/#/);
  assert.match(acl, /user dev-a\ntopic write fleetprune\/v1\/devices\/dev-a\/status\ntopic write fleetprune\/v1\/devices\/dev-a\/reports\ntopic write fleetprune\/v1\/devices\/dev-a\/telemetry\ntopic read fleetprune\/v1\/devices\/dev-a\/assignment\ntopic read fleetprune\/v1\/fleet\/commands/);
  assert.doesNotMatch(acl, /dev-r/);
  assert.doesNotMatch(acl, /pattern|%/);
});

for (const kind of BROKER_KINDS) {
  test(`${kind}: credentials and topic ACLs are enforced; a revoked device is refused`, async (t) => {
    const harness = await harnessFor(t, kind);
    if (!harness) return;
    const configA = await harness.enroll('dev-a', ACCESS);
    const configB = await harness.enroll('dev-b', ACCESS);
    const url = harness.broker.url;

    await assert.rejects(connectClient(url, { clientId: 'dev-a', username: 'dev-a', password: 'wrong' }), /Bad username or password|Not authorized/i);
    await assert.rejects(connectClient(url, { clientId: 'anon', username: '', password: '' }), /Bad username or password|Not authorized/i);

    const a = await connectClient(url, { clientId: 'dev-a', username: 'dev-a', password: configA.broker.password });
    const b = await connectClient(url, { clientId: 'dev-b', username: 'dev-b', password: configB.broker.password });
    t.after(() => {
      a.end(true);
      b.end(true);
    });

    // A publishes a valid report as B on B's topic: the broker must not let it through.
    await Promise.race([a.publishAsync(reportsTopic('dev-b'), assignmentReport('dev-b'), { qos: 1 }).catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    // B's own report does arrive (the path works).
    await b.publishAsync(reportsTopic('dev-b'), assignmentReport('dev-b'), { qos: 1 });
    await waitFor(() => harness.ingest.reports.length >= 1, 5000, 'B\'s own report');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(harness.ingest.reports.length, 1, 'only B\'s own report is ingested');
    assert.equal(harness.ingest.reports[0]!.deviceId, 'dev-b');

    // A cannot read B's (retained) assignment; B can.
    const a2 = await connectClient(url, { clientId: 'dev-a', username: 'dev-a', password: configA.broker.password });
    t.after(() => a2.end(true));
    await publishAssignment(harness.broker, 'dev-b', { model: 'm', version: '1', sha256: SHA, role: 'candidate', serverUrl: ACCESS.url }, SIGNER);
    const [seenByA, seenByB] = await Promise.all([collectMessages(a2, assignmentTopic('dev-b'), 700), collectMessages(b, assignmentTopic('dev-b'), 700)]);
    assert.equal(seenByA.length, 0, 'A must not receive B\'s assignment');
    assert.equal(seenByB.length, 1, 'B receives its own retained assignment');
    const wildcard = await collectMessages(a2, 'fleetprune/v1/devices/+/assignment', 500);
    assert.equal(wildcard.length, 0, 'A must not read assignments through a wildcard');

    if (kind === 'embedded') {
      // A device cannot take another device's client id (and persistent session).
      await assert.rejects(connectClient(url, { clientId: 'dev-b', username: 'dev-a', password: configA.broker.password }), /Not authorized/);
    }

    // Revocation: B is refused afterwards.
    const embedded = harness.broker instanceof EmbeddedBroker ? harness.broker : undefined;
    if (embedded) {
      // B as an agent runs: a persistent session subscribed at QoS 1, now offline.
      const session = await connectClient(url, { clientId: 'dev-b', username: 'dev-b', password: configB.broker.password, clean: false });
      await session.subscribeAsync(assignmentTopic('dev-b'), { qos: 1 });
      await session.endAsync();
      assert.deepEqual(await embedded.sessionTopics('dev-b'), [assignmentTopic('dev-b')], 'B has a persistent session');
    }
    harness.credentials.revoke('dev-b');
    await harness.broker.credentialsChanged();
    if (embedded) {
      assert.deepEqual(await embedded.sessionTopics('dev-b'), [], 'the revoked device\'s session subscribes to nothing');
      // What the dropped session is for: fleet messages sent after the revocation are not queued for B.
      const queuedBefore = await embedded.queuedMessages('dev-b');
      await publishAssignment(harness.broker, 'dev-b', { model: 'm', version: '2', sha256: SHA, role: 'candidate', serverUrl: ACCESS.url }, SIGNER);
      await harness.broker.publish(assignmentTopic('dev-b'), Buffer.from('{}'), { qos: 1, retain: false });
      assert.equal(await embedded.queuedMessages('dev-b'), queuedBefore, 'nothing more is queued for the revoked device');
    }
    await assert.rejects(connectClient(url, { clientId: 'dev-b', username: 'dev-b', password: configB.broker.password }), /Bad username or password|Not authorized/i);
    // A still works.
    const a3 = await connectClient(url, { clientId: 'dev-a-check', username: 'dev-a', password: configA.broker.password }).catch(() => undefined);
    if (kind === 'mosquitto') {
      assert.ok(a3, 'A still connects after B is revoked');
      a3.end(true);
    } else {
      assert.equal(a3, undefined, 'the embedded broker pins client id = device id');
    }
  });
}
