import type { RolloutRepository } from './rollout-repository.ts';
import type { RolloutState } from './rollout-state.ts';

interface Entry {
  readonly id: string;
  readonly since: number;
}

/**
 * Per device and model, the rollout that last decided what the device runs: the one that speaks
 * for it when it comes back online. That is the newest to start, unless an older one was rolled
 * back since — a rollback sends its devices back, and after a promotion takes devices from outside
 * it, which a newer rollout that failed or was aborted may hold too. A rollout's devices are fixed
 * when it starts, and grow only by such a rollback, so the index is built from the repository once
 * (on first use) and then kept current by `add` as rollouts start and roll back. It spares a
 * reconnecting device a load of every rollout ever run.
 */
export class DeviceRolloutIndex {
  readonly #byDevice = new Map<string, Map<string, Entry>>();
  #built: Promise<void> | undefined;

  constructor(readonly repository: Pick<RolloutRepository, 'list' | 'load'>) {}

  /** Records a started or rolled-back rollout (also safe while the first scan runs: the latest decision wins). */
  add(state: RolloutState): void {
    const since = decidedAt(state);
    for (const device of state.devices) {
      let models = this.#byDevice.get(device.id);
      if (!models) this.#byDevice.set(device.id, (models = new Map()));
      const known = models.get(state.spec.model);
      if (!known || known.since <= since) models.set(state.spec.model, { id: state.id, since });
    }
  }

  /** Ids of the rollouts that speak for the device, one per model. */
  async rolloutsOf(deviceId: string): Promise<string[]> {
    this.#built ??= this.#scan().catch((error: unknown) => {
      this.#built = undefined; // try again on the next call
      throw error;
    });
    await this.#built;
    return [...(this.#byDevice.get(deviceId)?.values() ?? [])].map((entry) => entry.id);
  }

  async #scan(): Promise<void> {
    // Oldest first, so a rollout started in the same millisecond as an older one still wins.
    for (const id of [...(await this.repository.list())].reverse()) {
      const record = await this.repository.load(id);
      if (record) this.add(record.state);
    }
  }
}

/**
 * When the rollout last decided what its devices run: its start, or its last rollback (for a state
 * stored before rolledBackAt, the rollback that ended it). A rollback of a rollout that had
 * failed or was aborted does not count: it only re-sends what the failure decided, and is allowed
 * while a newer rollout runs, which must keep speaking for its devices.
 */
function decidedAt(state: RolloutState): number {
  const rolledBack = state.rolledBackAt ?? (state.phase === 'RolledBack' && state.outcome?.status === 'rolled-back' ? state.outcome.at : undefined);
  return Math.max(state.createdAt, rolledBack ?? state.createdAt);
}
