import type { SqlEngine } from '../store/sql-engine.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import type { RolloutRecord } from './rollout-repository.ts';
import { isTerminal } from './rollout-state-machine.ts';

/**
 * What rollouts under way (not yet Completed, Failed, Aborted or RolledBack) hold, so that
 * operator actions outside them do not pull the ground from under them: their candidate version
 * (not retired meanwhile) and their target devices (not assigned something else meanwhile).
 */
export class RolloutHolds {
  readonly #rollouts: StoreRolloutRepository;

  constructor(engine: SqlEngine) {
    this.#rollouts = new StoreRolloutRepository(engine);
  }

  /** The rollout still rolling `model@version` out, as `rollout ID (Phase)`, else null. */
  async ofCandidate(model: string, version: string): Promise<string | null> {
    const found = (await this.#underWay(model)).find((record) => record.state.spec.candidateVersion === version);
    return found ? describe(found) : null;
  }

  /** The first of `deviceIds` that is a target of a rollout under way, with that rollout, else null. */
  async ofDevices(deviceIds: readonly string[]): Promise<{ deviceId: string; rollout: string } | null> {
    const wanted = new Set(deviceIds);
    for (const record of await this.#underWay()) {
      const device = record.state.devices.find((entry) => wanted.has(entry.id));
      if (device) return { deviceId: device.id, rollout: describe(record) };
    }
    return null;
  }

  async #underWay(model?: string): Promise<RolloutRecord[]> {
    const records: RolloutRecord[] = [];
    for (const id of await this.#rollouts.list({ unfinished: true, ...(model !== undefined ? { model } : {}) })) {
      const record = await this.#rollouts.load(id);
      if (record && !isTerminal(record.state)) records.push(record);
    }
    return records;
  }
}

function describe(record: RolloutRecord): string {
  return `rollout ${record.state.id} of ${record.state.spec.model} (${record.state.phase})`;
}
