import type { SqlEngine, SqlExecutor } from '../store/sql-engine.ts';
import { StoreRolloutRepository } from '../store/repositories/rollouts-repository.ts';
import { fromJsonColumn } from '../store/repositories/json-column.ts';
import type { RolloutRecord } from './rollout-repository.ts';
import { isTerminal } from './rollout-state-machine.ts';
import { TERMINAL_PHASES, type RolloutAction, type RolloutPhase } from './rollout-state.ts';

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

  /**
   * Why the production alias of `model` may not be moved or cleared by hand now, else null: a
   * rollout of the model is under way (it makes its candidate production when it completes, and a
   * failure or abort takes the alias from the candidate, so a move onto it left the model without
   * any production version; a move off its baseline left the rollout restoring another version
   * than the one the alias names), or a finished one is still recording its version statuses (the
   * alias it moves or takes away). `db`: the transaction of the alias move, which holds the model's
   * row locked as a rollout's creation does (StoreRolloutRepository.create): a rollout started
   * meanwhile has committed, or sees the move.
   */
  async ofProductionAlias(model: string, db: SqlExecutor = this.#engine): Promise<string | null> {
    const rows = await db.all<{ id: string; phase: string; pending_actions: string }>('SELECT id, phase, pending_actions FROM rollouts WHERE model = ? AND unfinished = 1 ORDER BY ord DESC', [model]);
    for (const row of rows) {
      if (!TERMINAL_PHASES.includes(row.phase as RolloutPhase)) {
        return `rollout ${row.id} of ${model} (${row.phase}) is under way, and the production alias is the rollout's to move: finish, abort or roll it back first`;
      }
      if (fromJsonColumn<RolloutAction[]>(row.pending_actions).some((action) => action.kind === 'markVersion')) {
        return `rollout ${row.id} of ${model} (${row.phase}) is still recording its version statuses (the production alias); try again once that is done`;
      }
    }
    return null;
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
