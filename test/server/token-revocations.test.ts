import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { TokenService } from '../../server/auth/token-service.ts';
import { openStore } from '../../server/store/open-store.ts';
import { freshStoreLocation, STORE_ENGINES } from './helpers/store-engines.ts';

for (const engine of STORE_ENGINES) {
  describe(`token revocations on ${engine}`, () => {
    test('a stream on one server stops when another server sharing the database revokes its token', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      // Two servers: each its own TokenService (and in-process revocation listeners), one database.
      const here = new TokenService(store, { revocationPollMs: 100 });
      const there = new TokenService(store, { revocationPollMs: 100 });
      const { record, token } = await there.create('viewer', 'dashboard', 'test');
      const admin = await there.create('admin', 'ops', 'test');
      const principal = await here.authenticate(`Bearer ${token}`);
      let stopped = 0;
      here.revocations.watch(principal.tokenId, (why) => {
        assert.equal(why, 'the token was revoked');
        stopped += 1;
      });
      const other = await here.create('viewer', 'other', 'test');
      here.revocations.watch(other.record.id, () => assert.fail('a live token\'s stream was stopped'));
      await delay(300);
      assert.equal(stopped, 0, 'nothing revoked yet');
      await there.revoke(record.id, await there.authenticate(`Bearer ${admin.token}`));
      for (let i = 0; i < 50 && stopped === 0; i++) await delay(20);
      assert.equal(stopped, 1, 'the revocation on the other server reached the stream here');
      assert.equal(here.revocations.watching, 1, 'only the live token is still watched');
    });

    test('an expiring token works until its time, then is refused naming it; its streams stop; expired admin tokens are not live ones', async (t) => {
      const location = await freshStoreLocation(t, engine);
      if (!location) return;
      const store = await openStore(location);
      t.after(() => store.close());
      const tokens = new TokenService(store, { revocationPollMs: 100 });
      const before = Date.now();
      const { record, token } = await tokens.create('viewer', 'contractor', 'test', { expiresInSeconds: 3600 });
      const expiresAt = Date.parse(record.expiresAt!);
      assert.ok(expiresAt >= before + 3600_000 && expiresAt <= Date.now() + 3600_000, record.expiresAt!);
      assert.deepEqual((await tokens.list()).find((listed) => listed.id === record.id), record, 'the expiry is stored');
      assert.equal((await tokens.authenticate(`Bearer ${token}`)).tokenId, record.id);
      let stopped = 0;
      let why = '';
      tokens.revocations.watch(record.id, (reason) => {
        stopped += 1;
        why = reason;
      });
      const forever = await tokens.create('viewer', 'dashboard', 'test');
      assert.equal(forever.record.expiresAt, null);
      tokens.revocations.watch(forever.record.id, () => assert.fail("a token that never expires had its stream stopped"));

      // Its time comes (set back in the store, as a clock would bring it).
      const past = new Date(Date.now() - 1000).toISOString();
      await store.engine.run('UPDATE tokens SET expires_at = ? WHERE id = ?', [past, record.id]);
      await assert.rejects(tokens.authenticate(`Bearer ${token}`), { code: 'unauthenticated', message: `token ${record.id} expired at ${past}; ask an admin for a new one (fleetprune tokens create)` });
      for (let i = 0; i < 100 && stopped === 0; i++) await delay(20);
      assert.equal(stopped, 1, 'its open stream stopped at the next poll');
      assert.equal(why, `token ${record.id} expired at ${past}`, 'saying it expired, not that it was revoked');
      assert.equal((await tokens.authenticate(`Bearer ${forever.token}`)).tokenId, forever.record.id);

      // Admin tokens: an expired one is not live. With only it left, revoking the other live one is
      // refused (the last live admin), and a start makes a new one as on the first start.
      const first = await tokens.create('admin', 'first', 'test');
      const second = await tokens.create('admin', 'second', 'test', { expiresInSeconds: 60 });
      await store.engine.run('UPDATE tokens SET expires_at = ? WHERE id = ?', [past, second.record.id]);
      await assert.rejects(tokens.revoke(first.record.id, await tokens.authenticate(`Bearer ${first.token}`)), { code: 'conflict', message: /is the last live admin token/ });
      assert.equal(await tokens.bootstrapAdmin(undefined), null, 'a live admin token exists: none made');
      await store.engine.run('UPDATE tokens SET expires_at = ? WHERE id = ?', [past, first.record.id]);
      const made = await tokens.bootstrapAdmin(undefined);
      assert.match(made ?? '', /^fp_/, 'every admin token expired: a start makes a new one');
      assert.equal((await tokens.authenticate(`Bearer ${made}`)).role, 'admin');
    });
  });
}
