import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenService } from '../../server/auth/token-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import { UserError } from '../../shared/util/errors.ts';
import { freshStoreLocation } from './helpers/store-engines.ts';

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
  await tokens.revoke('env-admin', ADMIN);
  await assert.rejects(tokens.authenticate(bearer('fp_first-admin-token-0000000000')), /unknown or revoked token/);

  // A restart with the leaked value still in the env file: it does not come back.
  await new TokenService(store).bootstrapAdmin('fp_first-admin-token-0000000000', (message) => warnings.push(message));
  await assert.rejects(tokens.authenticate(bearer('fp_first-admin-token-0000000000')), /unknown or revoked token/);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /FLEETPRUNE_ADMIN_TOKEN holds the env-admin token that was revoked at .*; it stays revoked/);

  // A new value is a new admin token, and the audit log says so.
  await new TokenService(store).bootstrapAdmin('fp_second-admin-token-000000000', (message) => warnings.push(message));
  assert.equal((await tokens.authenticate(bearer('fp_second-admin-token-000000000'))).role, 'admin');
  const audit = await store.audit.list({ limit: 10 });
  assert.deepEqual(audit.filter((entry) => entry.target === 'token:env-admin').map((entry) => entry.action), ['token.replace', 'token.revoke']);
});

test('FLEETPRUNE_ADMIN_TOKEN holding the value of another token is refused on one line, and changes nothing', async (t) => {
  const location = await freshStoreLocation(t, 'sqlite');
  const store = await openStore(location!);
  t.after(() => store.close());
  const tokens = new TokenService(store);
  const other = await tokens.create('viewer', 'a viewer', 'someone');
  await assert.rejects(tokens.bootstrapAdmin(other.token), (error) => error instanceof UserError && error.message === 'FLEETPRUNE_ADMIN_TOKEN holds the value of another token; set a new value');
  assert.deepEqual((await store.tokens.list()).map((token) => token.id), [other.record.id]);
  assert.equal((await tokens.authenticate(`Bearer ${other.token}`)).role, 'viewer');
});
