import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AssignmentOutcomes } from '../../server/fleet/assignment-outcomes.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { StoreFleetIngest } from '../../server/fleet/store-fleet-ingest.ts';
import { STORE_ENGINES, withFreshStore } from '../server/helpers/store-engines.ts';

/**
 * A device's status is published retained, so the broker hands it over again each time the server
 * subscribes (a restart, a reconnect, a new leader). That replay is not the device being seen.
 */
for (const engine of STORE_ENGINES) {
  describe(`device status and last seen on ${engine}`, () => {
    test('a status already stored (same state, same since) leaves last seen alone; a new status moves it', async (t) => {
      await withFreshStore(t, engine, async (store) => {
        const fleet = new FleetStore(store);
        await fleet.repos.devices.insert({ id: 'dev-a', labels: {}, secretHash: 'x', tokenId: 'tok-dev-a', enrolledAt: '2026-01-01T00:00:00.000Z', enrolledBy: 'test' });
        let now = new Date('2026-01-01T10:00:00.000Z');
        const ingest = new StoreFleetIngest({ fleet, cohortLabel: 'cohort', outcomes: new AssignmentOutcomes(), clock: () => now });
        const lastSeen = async () => (await fleet.repos.devices.get('dev-a'))?.lastSeen;
        const status = (online: boolean, since: string) => ({ schema: 1 as const, deviceId: 'dev-a', online, since });

        assert.equal(await ingest.recordStatus(status(true, '2026-01-01T09:59:59.000Z')), 'recorded');
        assert.equal(await lastSeen(), '2026-01-01T10:00:00.000Z');
        now = new Date('2026-01-01T11:00:00.000Z');
        assert.equal(await ingest.recordStatus(status(false, '2026-01-01T09:59:59.000Z')), 'recorded');
        assert.equal(await lastSeen(), '2026-01-01T11:00:00.000Z', 'the device going offline is news');
        // Days later the server restarts and the broker hands the retained offline status over again.
        now = new Date('2026-01-05T08:00:00.000Z');
        assert.equal(await ingest.recordStatus(status(false, '2026-01-01T09:59:59.000Z')), 'recorded');
        assert.equal(await lastSeen(), '2026-01-01T11:00:00.000Z', 'the replayed status is not a sighting');
        assert.equal((await fleet.repos.devices.get('dev-a'))?.online, false);
        // The device comes back: a new status.
        assert.equal(await ingest.recordStatus(status(true, '2026-01-05T08:00:00.000Z')), 'recorded');
        assert.equal(await lastSeen(), '2026-01-05T08:00:00.000Z');
        assert.equal((await fleet.repos.devices.get('dev-a'))?.online, true);
      });
    });
  });
}
