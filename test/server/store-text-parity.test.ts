import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Store } from '../../server/store/store.ts';
import { STORE_ENGINES, withFreshStore } from './helpers/store-engines.ts';

for (const engine of STORE_ENGINES) {
  describe(`text the engines store alike on ${engine}`, () => {
    const withStore = (t: TestContext, work: (store: Store) => Promise<void>) => withFreshStore(t, engine, work);

    test('an unpaired surrogate is stored as one U+FFFD on every engine (never as invalid UTF-8), and found by the text it was stored as', async (t) => {
      await withStore(t, async (store) => {
        const token = { role: 'admin', createdAt: '2025-01-01T00:00:00.000Z', createdBy: 'tester', revokedAt: null, expiresAt: null };
        await store.tokens.insert({ ...token, id: 'lone', tokenHash: 'h1', label: 'a\ud800b\udc00c' });
        await store.tokens.insert({ ...token, id: 'pair', tokenHash: 'h2', label: 'a\u{1F600}b' });
        assert.equal((await store.tokens.get('lone'))?.label, 'a\uFFFDb\uFFFDc');
        assert.equal((await store.tokens.get('pair'))?.label, 'a\u{1F600}b', 'a surrogate pair (a character beyond the BMP) is kept');
        // What is in the database is valid UTF-8 on both: the stored text has 5 characters.
        const length = engine === 'sqlite' ? 'length(label)' : 'char_length(label)';
        assert.equal(Number((await store.engine.get(`SELECT ${length} AS n FROM tokens WHERE id = ?`, ['lone']))?.n), 5);
        // A lookup with the same unpaired surrogate finds the row, as the same text would.
        const found = await store.engine.all('SELECT id FROM tokens WHERE label = ?', ['a\ud800b\udc00c']);
        assert.deepEqual(found.map((row) => row.id), ['lone']);
      });
    });
  });
}
