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
      here.revocations.watch(principal.tokenId, () => void (stopped += 1));
      const other = await here.create('viewer', 'other', 'test');
      here.revocations.watch(other.record.id, () => assert.fail('a live token\'s stream was stopped'));
      await delay(300);
      assert.equal(stopped, 0, 'nothing revoked yet');
      await there.revoke(record.id, await there.authenticate(`Bearer ${admin.token}`));
      for (let i = 0; i < 50 && stopped === 0; i++) await delay(20);
      assert.equal(stopped, 1, 'the revocation on the other server reached the stream here');
      assert.equal(here.revocations.watching, 1, 'only the live token is still watched');
    });
  });
}
