import type { SqlEngine, SqlExecutor } from '../store/sql-engine.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import type { RolloutRecord } from './rollout-repository.ts';
import { isTerminal } from './rollout-state-machine.ts';
import { TERMINAL_PHASES } from './rollout-state.ts';

/**
 * What rollouts under way (not yet Completed, Failed, Aborted or RolledBack) hold, so that
 * operator actions outside them do not pull the ground from under them: their candidate version
 * (not retired meanwhile) and their target devices (not assigned something else meanwhile).
 */
export class RolloutHolds {
  readonly #engine: SqlEngine;
  readonly #rollouts: StoreRolloutRepository;

  constructor(engine: SqlEngine) {
    this.#engine = engine;
    this.#rollouts = new StoreRolloutRepository(engine);
  }

  /**
   * The rollout still rolling `model@version` out, as `rollout ID of MODEL (Phase)`, else null.
   * `db`: the transaction of a retirement, which holds the model's row locked as a rollout's
   * creation does (StoreRolloutRepository.create): a rollout started meanwhile has committed.
   */
  async ofCandidate(model: string, version: string, db: SqlExecutor = this.#engine): Promise<string | null> {
    const row = await db.get<{ id: string; phase: string }>(
      `SELECT id, phase FROM rollouts WHERE model = ? AND candidate_version = ? AND phase NOT IN (${TERMINAL_PHASES.map(() => '?').join(', ')}) ORDER BY created_at DESC LIMIT 1`,
      [model, version, ...TERMINAL_PHASES],
    );
    return row ? `rollout ${row.id} of ${model} (${row.phase})` : null;
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

  async #underWay(): Promise<RolloutRecord[]> {
    const records: RolloutRecord[] = [];
    for (const id of await this.#rollouts.list({ unfinished: true })) {
      const record = await this.#rollouts.load(id);
      if (record && !isTerminal(record.state)) records.push(record);
    }
    return records;
  }
}

function describe(record: RolloutRecord): string {
  return `rollout ${record.state.id} of ${record.state.spec.model} (${record.state.phase})`;
}
