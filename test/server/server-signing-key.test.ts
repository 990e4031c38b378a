import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadOrCreateServerKey } from '../../server/artifacts/server-signing-key.ts';
import { keyId, loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { tempDir } from '../helpers/cli.ts';

test('servers starting together on a fresh shared data dir all sign with the one key on disk (PostgreSQL peers)', async (t) => {
  for (let round = 0; round < 10; round += 1) {
    const dataDir = await tempDir(t);
    const keys = await Promise.all(Array.from({ length: 4 }, () => loadOrCreateServerKey(dataDir, async () => 0)));
    const onDisk = keyId(await loadPrivateKey(join(dataDir, 'keys', 'signing.key')));
    assert.deepEqual(keys.map((key) => keyId(key.privateKey)), [onDisk, onDisk, onDisk, onDisk], `round ${round}`);
    const publicPem = await readFile(join(dataDir, 'keys', 'signing.pub'), 'utf8');
    assert.equal(publicPem, keys[0]!.publicKey.export({ type: 'spki', format: 'pem' }), 'the public half is the installed key\'s');
    assert.deepEqual((await readdir(join(dataDir, 'keys'))).sort(), ['signing.key', 'signing.pub'], 'no temporary file is left');
    assert.equal((await stat(join(dataDir, 'keys', 'signing.key'))).mode & 0o777, 0o600);
  }
});

test('an existing key is kept; a missing one is not replaced once devices pin it', async (t) => {
  const dataDir = await tempDir(t);
  const first = await loadOrCreateServerKey(dataDir, async () => 0);
  const again = await loadOrCreateServerKey(dataDir, async () => 3);
  assert.equal(keyId(again.privateKey), keyId(first.privateKey));
  await assert.rejects(loadOrCreateServerKey(await tempDir(t), async () => 3), /is missing, but 3 enrolled device\(s\) pin its public key/);
});

test('staged key files a killed start left behind (a private key nobody installed) are removed at the next start; a fresh one, a peer\'s in flight, stays', async (t) => {
  const dataDir = await tempDir(t);
  await loadOrCreateServerKey(dataDir, async () => 0);
  const keys = join(dataDir, 'keys');
  const old = new Date(Date.now() - 3_600_000);
  for (const name of ['.signing.key.tmp-0123456789ab', '.signing.pub.tmp-0123456789ab']) {
    await writeFile(join(keys, name), 'staged');
    await utimes(join(keys, name), old, old);
  }
  await writeFile(join(keys, '.signing.key.tmp-fedcba987654'), 'staged just now');
  await writeFile(join(keys, 'notes.txt'), "the operator's");
  await utimes(join(keys, 'notes.txt'), old, old);
  await loadOrCreateServerKey(dataDir, async () => 0);
  assert.deepEqual((await readdir(keys)).sort(), ['.signing.key.tmp-fedcba987654', 'notes.txt', 'signing.key', 'signing.pub']);
});

test('a signing key others may read is warned about; a signing.pub that is missing or another key\'s is written again from the key, with a warning', async (t) => {
  const dataDir = await tempDir(t);
  const key = await loadOrCreateServerKey(dataDir, async () => 0);
  const keys = join(dataDir, 'keys');
  const messages: string[] = [];
  const log = { warn: (_fields: object, message: string) => void messages.push(message) };
  await loadOrCreateServerKey(dataDir, async () => 0, log);
  assert.deepEqual(messages, [], 'as the server made them: nothing to say');

  await chmod(join(keys, 'signing.key'), 0o644);
  await writeFile(join(keys, 'signing.pub'), generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  await loadOrCreateServerKey(dataDir, async () => 0, log);
  assert.deepEqual(messages, [
    `${join(keys, 'signing.key')} can be read by other users (mode 0644): anyone who can read it can sign models every device installs; chmod 600 it`,
    `${join(keys, 'signing.pub')} was not the public half of signing.key: written again from signing.key (key ${keyId(key.publicKey)})`,
  ]);
  assert.equal(await readFile(join(keys, 'signing.pub'), 'utf8'), key.publicKey.export({ type: 'spki', format: 'pem' }));
  messages.length = 0;
  await rm(join(keys, 'signing.pub'));
  await chmod(join(keys, 'signing.key'), 0o600);
  await loadOrCreateServerKey(dataDir, async () => 0, log);
  assert.deepEqual(messages, [`${join(keys, 'signing.pub')} was missing: written again from signing.key (key ${keyId(key.publicKey)})`]);
});
