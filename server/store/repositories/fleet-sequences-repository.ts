import type { SqlExecutor } from '../sql-engine.ts';

/** The streams whose messages are numbered: devices' assignments and fleet commands. */
export type SequenceName = 'assignment' | 'command';

/**
 * Counters that number the messages the server signs (shared by every server on the database, so
 * numbers keep growing across restarts and leader changes). Take one inside the transaction that
 * records the message.
 */
export class FleetSequencesRepository {
  constructor(private readonly db: SqlExecutor) {}

  async next(name: SequenceName): Promise<number> {
    const row = await this.db.get('UPDATE fleet_sequences SET value = value + 1 WHERE name = ? RETURNING value', [name]);
    if (!row) throw new Error(`no sequence ${name} in the store (its migration has not run)`);
    return Number(row.value);
  }
}
