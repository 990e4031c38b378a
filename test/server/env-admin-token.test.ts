import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from '../helpers/cli.ts';
import { TokenService } from '../../server/auth/token-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import { UserError } from '../../shared/util/errors.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { freshStoreLocation, STORE_ENGINES } from './helpers/store-engines.ts';

const ADMIN = { tokenId: 'someone', role: 'admin' as const, label: 'someone' };

test('FLEETPRUNE_ADMIN_TOKEN: revoked, it stays revoked across restarts while the variable holds the same value; a new value replaces it, audited', async (t) => {
  const location = await freshStoreLocation(t, 'sqlite');
  const store = await openStore(location!);
  t.after(() => store.close());
  const tokens = new TokenService(store);
  const warnings: string[] = [];
  const bearer = (token: string) => `Bearer ${token}`;

  await tokens.bootstrapAdmin('fp_first-admin-token-0000000000', (message) => warnings.push(message));
  assert.equal((await tokens.authenticate(bearer('fp_first-admin-token-0000000000'))).tokenId, 'env-admin');
  // The last admin token is not revoked (no one could administer the server): another first.
  await assert.rejects(tokens.revoke('env-admin', ADMIN), /^ServiceError: token env-admin is the last live admin token: revoked, no one could administer the server until a restart made a new one; create another first/);
  assert.equal((await tokens.authenticate(bearer('fp_first-admin-token-0000000000'))).tokenId, 'env-admin', 'still live');
  await tokens.create('admin', 'second admin', 'test');
  await tokens.revoke('env-admin', ADMIN);
  await assert.rejects(tokens.authenticate(bearer('fp_first-admin-token-0000000000')), /unknown or revoked token/);

  // A restart with the leaked value still in the env file: it does not come back.
  await new TokenService(store).bootstrapAdmin('fp_first-admin-token-0000000000', (message) => warnings.push(message));
  await assert.rejects(tokens.authenticate(bearer('fp_first-admin-token-0000000000')), /unknown or revoked token/);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /FLEETPRUNE_ADMIN_TOKEN holds the env-admin token that was revoked at .*; it stays revoked/);

  // A new value is a new admin token, and the audit log says so. The id stays env-admin: the entry
  // says that what token:env-admin did before it was the previous value's, and where that value is
  // kept; the new value's creation time is its own (it kept the first value's).
  const firstValue = (await tokens.list()).find((token) => token.id === 'env-admin')!;
  await new Promise((resolve) => setTimeout(resolve, 5));
  await new TokenService(store).bootstrapAdmin('fp_second-admin-token-000000000', (message) => warnings.push(message));
  assert.equal((await tokens.authenticate(bearer('fp_second-admin-token-000000000'))).role, 'admin');
  const audit = await store.audit.list({ limit: 10 });
  assert.deepEqual(audit.filter((entry) => entry.target === 'token:env-admin').map((entry) => entry.action), ['token.replace', 'token.revoke']);
  const revokedValue = (await tokens.list()).find((token) => token.id.startsWith('env-admin-revoked-'))!;
  const replacement = audit.find((entry) => entry.action === 'token.replace')!;
  assert.deepEqual(replacement.details, {
    reason: "FLEETPRUNE_ADMIN_TOKEN changed: entries of token:env-admin before this one are the previous value's",
    previousValue: { createdAt: firstValue.createdAt, revokedAt: firstValue.revokedAt, keptAs: revokedValue.id },
  });
  const secondValue = (await tokens.list()).find((token) => token.id === 'env-admin')!;
  assert.equal(secondValue.createdAt, replacement.at, 'created when it replaced the first');
  assert.ok(secondValue.createdAt > firstValue.createdAt);
  assert.equal(revokedValue.createdAt, firstValue.createdAt, 'the kept value keeps its own creation time');

  // The revoked value set again later (an old env file restored): it stays revoked, and the new one stays live.
  assert.deepEqual([revokedValue.role, revokedValue.label, revokedValue.revokedAt !== null], ['admin', 'FLEETPRUNE_ADMIN_TOKEN (a revoked value)', true]);
  await new TokenService(store).bootstrapAdmin('fp_first-admin-token-0000000000', (message) => warnings.push(message));
  await assert.rejects(tokens.authenticate(bearer('fp_first-admin-token-0000000000')), /unknown or revoked token/);
  assert.equal((await tokens.authenticate(bearer('fp_second-admin-token-000000000'))).tokenId, 'env-admin', 'the current value stays live');
  assert.match(warnings.at(-1)!, new RegExp(`^FLEETPRUNE_ADMIN_TOKEN holds an env-admin value that was revoked at .* \\(kept as token ${revokedValue.id}\\); it stays revoked`));
  // A third value after the second is revoked too: both revoked values are kept.
  await tokens.revoke('env-admin', ADMIN);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await new TokenService(store).bootstrapAdmin('fp_third-admin-token-0000000000', (message) => warnings.push(message));
  assert.equal((await tokens.list()).filter((token) => token.id.startsWith('env-admin-revoked-')).length, 2);
  for (const value of ['fp_first-admin-token-0000000000', 'fp_second-admin-token-000000000']) {
    await new TokenService(store).bootstrapAdmin(value, (message) => warnings.push(message));
    await assert.rejects(tokens.authenticate(bearer(value)), /unknown or revoked token/, value);
  }
  assert.equal((await tokens.authenticate(bearer('fp_third-admin-token-0000000000'))).tokenId, 'env-admin');
  // A replacement decided on a stale read (another server changed the hash, or an operator revoked it, since) writes nothing.
  const current = (await store.tokens.hashOf('env-admin'))!;
  assert.equal(await store.tokens.replaceHash('env-admin', 'f'.repeat(64), new Date().toISOString(), { tokenHash: 'e'.repeat(64), revokedAt: null }), false);
  assert.equal(await store.tokens.replaceHash('env-admin', 'f'.repeat(64), new Date().toISOString(), { tokenHash: current, revokedAt: '2026-01-01T00:00:00.000Z' }), false);
  assert.equal(await store.tokens.hashOf('env-admin'), current);
});

test('FLEETPRUNE_ADMIN_TOKEN holding the value of another token is refused on one line, and changes nothing', async (t) => {
  const location = await freshStoreLocation(t, 'sqlite');
  const store = await openStore(location!);
  t.after(() => store.close());
  const tokens = new TokenService(store);
  const other = await tokens.create('viewer', 'a viewer', 'someone');
  await assert.rejects(tokens.bootstrapAdmin(other.token), (error) => error instanceof UserError && error.message === 'FLEETPRUNE_ADMIN_TOKEN holds the value of another token the server has (the admin token it printed at its first start, say: that one works as it is, without FLEETPRUNE_ADMIN_TOKEN); leave it unset, or set a new value');
  assert.deepEqual((await store.tokens.list()).map((token) => token.id), [other.record.id]);
  assert.equal((await tokens.authenticate(`Bearer ${other.token}`)).role, 'viewer');
});

for (const engine of STORE_ENGINES) {
  test(`FLEETPRUNE_ADMIN_TOKEN changed to the value of another token, once env-admin exists, is refused on one line and changes nothing (${engine})`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    const tokens = new TokenService(store);
    await tokens.bootstrapAdmin('fp_first-admin-token-0000000000', () => {});
    const other = await tokens.create('viewer', 'a viewer', 'someone');
    await assert.rejects(tokens.bootstrapAdmin(other.token, () => {}), (error) => error instanceof UserError && error.message === 'FLEETPRUNE_ADMIN_TOKEN holds the value of another token the server has (the admin token it printed at its first start, say: that one works as it is, without FLEETPRUNE_ADMIN_TOKEN); leave it unset, or set a new value');
    assert.equal((await tokens.authenticate('Bearer fp_first-admin-token-0000000000')).role, 'admin', 'env-admin keeps its value');
    assert.equal((await tokens.authenticate(`Bearer ${other.token}`)).role, 'viewer');
    assert.deepEqual((await store.audit.list({ limit: 10 })).filter((entry) => entry.action === 'token.replace'), [], 'no replacement audited');
  });
}

test('FLEETPRUNE_ADMIN_TOKEN that no Authorization header could carry (a space, a non-ASCII character) is refused at start, naming the character, never the token', () => {
  for (const [token, message] of [
    ['correct horse battery staple', /^FLEETPRUNE_ADMIN_TOKEN: holds a space \(U\+0020\) at position 8;/],
    ['fp_admin-token-ÿ-0123456789', /^FLEETPRUNE_ADMIN_TOKEN: holds a character \(U\+00FF\) at position 16;/],
  ] as const) {
    assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', adminToken: token }), (error: Error) => message.test(error.message) && !error.message.includes(token), token);
  }
  assert.equal(parseServerConfig({ dataDir: '/tmp/x', adminToken: 'fp_admin-token!~0123456789' }).adminToken, 'fp_admin-token!~0123456789');
});

test('FLEETPRUNE_ADMIN_TOKEN set but empty is refused at start on one line (it was taken as unset: the server made and printed a token of its own); nothing is made', async (t) => {
  const dataDir = join(await tempDir(t), 'server');
  const run = await runCli(['server', '--data-dir', dataDir, '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'], { FLEETPRUNE_ADMIN_TOKEN: '' }, { timeoutMs: 30_000 });
  assert.deepEqual([run.code, run.stdout, run.stderr], [
    2,
    '',
    'fleetprune: FLEETPRUNE_ADMIN_TOKEN: set but empty; give it at least 16 characters, or unset it (the server then makes an admin token at its first start and prints it)\n',
  ]);
  assert.equal(existsSync(dataDir), false, 'no data dir made');
  assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', adminToken: 'fp_short' }), { message: 'FLEETPRUNE_ADMIN_TOKEN: must be at least 16 characters' });
});
