import { ServiceError } from '../app/service-error.ts';
import { describeLeader, type Leadership } from '../rollout/leader-election.ts';

/**
 * Whether this server may change the fleet (enroll, revoke, assign) right now. With an external
 * broker and PostgreSQL only the leader connects to the broker, so a standby refuses fleet
 * changes (503 naming the leader) before writing anything; otherwise the gate is always open.
 */
export interface FleetGate {
  readonly active: boolean;
  assertActive(): Promise<void>;
}

export const OPEN_FLEET_GATE: FleetGate = { active: true, assertActive: async () => {} };

/** Open while this server leads (and holds the external broker connection). */
export class LeaderOnlyFleetGate implements FleetGate {
  active = false;

  constructor(private readonly leadership: Leadership) {}

  async assertActive(): Promise<void> {
    if (this.active) return;
    const status = await this.leadership.status();
    if (status.isLeader) {
      // A takeover that failed for good (a broker refusing the server's password) is no reason to retry.
      if (this.leadership.takeoverFailed?.()) {
        throw new ServiceError('unavailable', `this server (${status.instance}) leads but its takeover of the broker failed (see its log); restart it once the cause is fixed`);
      }
      throw new ServiceError('retry_later', `this server (${status.instance}) leads but is not connected to the external broker yet; retry shortly`);
    }
    const standby = `this server (${status.instance}) is a standby: with an external broker only the leader connects to it`;
    // No leader elected (a failover under way): the same change may work shortly, here or there.
    if (status.leader === null) throw new ServiceError('retry_later', `${standby}, and none is elected right now; retry shortly`);
    throw new ServiceError('unavailable', `${standby}; send fleet changes to the leader, ${describeLeader(status.leader)}`);
  }
}
