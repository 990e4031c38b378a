import assert from 'node:assert/strict';
import { readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
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
