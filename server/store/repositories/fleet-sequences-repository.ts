import type { SqlExecutor } from '../sql-engine.ts';

/** The streams whose messages are numbered: devices' assignments and fleet commands. */
export type SequenceName = 'assignment' | 'command';

/**
 * Counters that number the messages the server signs (shared by every server on the database, so
 * numbers keep growing across restarts and leader changes). Take one inside the transaction that
 * records the message. A number is never below the current time in microseconds: a database
 * restored from a backup (its counters rolled back) still numbers new messages above every one
 * sent before, which devices would otherwise refuse as replays until the counter caught up.
 */
export class FleetSequencesRepository {
  constructor(
    private readonly db: SqlExecutor,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The highest number any server may have given a message of the stream by now: the counter, or
   * the time floor when that is higher (a restored counter lags the numbers sent before the backup,
   * never the clock). A device claiming more claims a message no server sent.
   */
  async ceiling(name: SequenceName): Promise<number> {
    const row = await this.db.get('SELECT value FROM fleet_sequences WHERE name = ?', [name]);
    return Math.max(row ? Number(row.value) : 0, this.clock() * 1000);
  }

  async next(name: SequenceName): Promise<number> {
    // The increment takes the row's lock (PostgreSQL) for the rest of the transaction.
    const row = await this.db.get('UPDATE fleet_sequences SET value = value + 1 WHERE name = ? RETURNING value', [name]);
    if (!row) throw new Error(`no sequence ${name} in the store (its migration has not run)`);
    const counted = Number(row.value);
    const floor = this.clock() * 1000;
    if (counted >= floor) return counted;
    await this.db.run('UPDATE fleet_sequences SET value = ? WHERE name = ?', [floor, name]);
    return floor;
  }
}
