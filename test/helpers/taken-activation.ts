import { FleetStore } from '../../server/fleet/fleet-store.ts';
import type { Store } from '../../server/store/store.ts';

/**
 * Records that each device took the activation retained for it, as its answer would (for tests
 * where no device connects): a rollout holds a candidate back from a device that has yet to take
 * its retained activation (StoreFleetPort), as a device that never took it would not run it.
 */
export async function activationTaken(store: Store, deviceIds: readonly string[]): Promise<void> {
  const { repos } = new FleetStore(store);
  const at = new Date().toISOString();
  for (const id of deviceIds) {
    const taken = (await repos.devices.get(id))?.retainedAssignment;
    if (taken?.role !== 'active') throw new Error(`${id} holds no retained activation`);
    await repos.assignments.setOutcome(taken.id, id, 'activated', null, at);
    await repos.devices.setSlots(id, { active: { model: taken.model, version: taken.version, sha256: taken.sha256 }, candidate: null, previous: null }, at);
  }
}
