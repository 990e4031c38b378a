import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStore } from '../../server/store/open-store.ts';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import { freshStoreLocation, STORE_ENGINES } from './helpers/store-engines.ts';

for (const engine of STORE_ENGINES) {
  test(`${engine}: a version status reason quoting a backend's NUL is stored (the store refused a NUL in text, and the rollout's action failed at every retry)`, async (t) => {
    const location = await freshStoreLocation(t, engine);
    if (!location) return;
    const store = await openStore(location);
    t.after(() => store.close());
    const repository = new VersionStatusRepository(store.engine);
    const change = { commandId: 'cmd-1', model: 'wine', version: '2', status: 'failed' as const, reason: 'prometheus: bad\u0000data', at: '2026-01-01T00:00:00.000Z' };
    assert.equal(await repository.record(change), true);
    assert.equal((await repository.current('wine', '2'))?.reason, 'prometheus: bad\uFFFDdata');
  });
}
