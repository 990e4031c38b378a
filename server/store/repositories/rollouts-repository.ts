import { CandidateRetiredError, ProductionMovedError, RevisionConflictError, rolloutInTheWay, type RolloutCommit, type RolloutCountFilter, type RolloutListFilter, type RolloutRecord, type RolloutRepository } from '../../rollout/rollout-repository.ts';
import { TERMINAL_PHASES, type DecisionLogEntry, type RolloutAction, type RolloutPhase, type RolloutState } from '../../rollout/rollout-state.ts';
import { RolloutCommandError } from '../../rollout/rollout-state-machine.ts';
import type { Dialect, SqlEngine, SqlExecutor } from '../sql-engine.ts';
import { UniqueViolation } from '../sql-engine.ts';
import { fromJsonColumn, toJsonColumn } from './json-column.ts';
import { ModelsRepository } from './models-repository.ts';
import { trimMeasurementEvidence } from '../../analysis/trim-evidence.ts';

/** Decision log entries read and rewritten per transaction by trimEvidenceBefore. */
const TRIM_BATCH = 200;

/**
 * RolloutRepository on the server's store (SQLite or PostgreSQL). State and pending actions
 * are JSON columns of one row; a commit updates that row only if its revision is the one the
 * caller read, and in the same transaction records executed action ids and appends decisions.
 */
export class StoreRolloutRepository implements RolloutRepository {
  constructor(private readonly engine: SqlEngine) {}

  async create(record: { state: RolloutState; pendingActions: readonly RolloutAction[]; decisions: readonly DecisionLogEntry[] }): Promise<void> {
    const { state } = record;
    await this.engine.transaction(async (tx) => {
      // The model's row stays locked to the commit (ModelsRepository.lockModel): a retirement of the
      // candidate (RegistryService.setRetired, which locks it too) either committed before (seen
      // here) or waits and then finds this rollout under way. Not the version's row: a transaction
      // holding that one (a slow status change of the model's last rollout) would hold up the start.
      const { model, candidateVersion } = state.spec;
      const models = new ModelsRepository(tx);
      await models.lockModel(model);
      const row = await tx.get<{ retired: number | boolean }>('SELECT retired FROM model_versions WHERE model = ? AND version = ?', [model, candidateVersion]);
      if (row && Number(row.retired) !== 0) throw new CandidateRetiredError(model, candidateVersion);
      // Likewise a move of the production alias (RegistryService.setAlias, refused while a rollout
      // of the model is under way): a move onto the candidate between the start's read and here
      // left a rollout of a version already production, whose failure took the alias away.
      // (A model the registry does not hold has no alias to move.)
      if (await models.getModel(model)) {
        // And one rollout of a model at a time (RolloutService.start checks it on the leader, but a
        // deposed leader that has not noticed yet, or a start through its stopped controller, runs
        // that check in another process): a start on another server either committed before (seen
        // here) or waits for this lock and then sees this one. Phase and pending actions only: a
        // state can be megabytes. A model the registry does not hold has no row to lock.
        await lockModelRollouts(tx, this.engine.dialect, model);
        const others = await tx.all<{ id: string; phase: RolloutPhase; pending_actions: unknown }>('SELECT id, phase, pending_actions FROM rollouts WHERE model = ? AND unfinished = 1 ORDER BY ord DESC', [model]);
        for (const other of others) {
          const inTheWay = rolloutInTheWay({ id: String(other.id), model, phase: other.phase, pendingActions: fromJsonColumn<RolloutAction[]>(other.pending_actions) });
          if (inTheWay) throw inTheWay;
        }
        const production = (await models.getAlias(model, 'production'))?.version ?? null;
        if (production !== state.previousProduction) throw new ProductionMovedError(model, candidateVersion, state.previousProduction, production);
      }
      try {
        await tx.run(
          `INSERT INTO rollouts (id, model, candidate_version, phase, unfinished, revision, state, pending_actions, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
          [
            state.id,
            state.spec.model,
            state.spec.candidateVersion,
            state.phase,
            unfinished(state, record.pendingActions) ? 1 : 0,
            toJsonColumn(state),
            toJsonColumn(record.pendingActions),
            iso(state.createdAt),
            iso(state.updatedAt),
          ],
        );
      } catch (error) {
        if (error instanceof UniqueViolation) throw new Error(`rollout ${state.id} already exists`, { cause: error });
        throw error;
      }
      await appendDecisions(tx, state.id, record.decisions);
    });
  }

  async load(id: string): Promise<RolloutRecord | undefined> {
    const row = await this.engine.get('SELECT state, pending_actions, revision FROM rollouts WHERE id = ?', [id]);
    if (!row) return undefined;
    return { state: fromJsonColumn(row.state), pendingActions: fromJsonColumn(row.pending_actions), revision: Number(row.revision) };
  }

  async revisionOf(id: string): Promise<number | undefined> {
    const row = await this.engine.get('SELECT revision FROM rollouts WHERE id = ?', [id]);
    return row ? Number(row.revision) : undefined;
  }

  async list(filter: RolloutListFilter = {}): Promise<readonly string[]> {
    const { where, params } = rolloutFilter(filter.finishedByLastChange ? { ...filter, finished: true } : filter);
    // Skipped and cut in SQL: a page of old rollouts reads their ids only. SQLite takes an OFFSET only after a LIMIT (-1: none).
    const page: (string | number)[] = [];
    let paging = '';
    if (filter.limit !== undefined) (paging = 'LIMIT ? OFFSET ?'), page.push(filter.limit, filter.offset ?? 0);
    else if (filter.offset !== undefined) (paging = this.engine.dialect === 'sqlite' ? 'LIMIT -1 OFFSET ?' : 'OFFSET ?'), page.push(filter.offset);
    const order = filter.finishedByLastChange ? 'updated_at DESC, id DESC' : 'ord DESC';
    const rows = await this.engine.all(`SELECT id FROM rollouts ${where} ORDER BY ${order} ${paging}`, [...params, ...page]);
    return rows.map((row) => String(row.id));
  }

  async count(filter: RolloutCountFilter = {}): Promise<number> {
    const { where, params } = rolloutFilter(filter);
    const row = await this.engine.get(`SELECT COUNT(*) AS n FROM rollouts ${where}`, params);
    return Number(row?.n ?? 0);
  }

  async commit(id: string, commit: RolloutCommit): Promise<number> {
    return this.engine.transaction(async (tx) => {
      const { state } = commit;
      if (commit.decisions.some((decision) => decision.kind === 'rollback')) await refuseUndoingNewer(tx, this.engine.dialect, id, state.spec.model);
      const { changes } = await tx.run(
        `UPDATE rollouts SET phase = ?, unfinished = ?, revision = revision + 1, state = ?, pending_actions = ?, updated_at = ?
         WHERE id = ? AND revision = ?`,
        [state.phase, unfinished(state, commit.pendingActions) ? 1 : 0, toJsonColumn(state), toJsonColumn(commit.pendingActions), iso(state.updatedAt), id, commit.expectedRevision],
      );
      if (changes !== 1) {
        const current = await tx.get('SELECT revision FROM rollouts WHERE id = ?', [id]);
        if (!current) throw new Error(`rollout ${id} does not exist`);
        throw new RevisionConflictError(id, commit.expectedRevision, Number(current.revision));
      }
      const at = new Date().toISOString();
      for (const actionId of commit.executedActionIds) {
        await tx.run('INSERT INTO rollout_actions (rollout_id, action_id, executed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING', [id, actionId, at]);
      }
      await appendDecisions(tx, id, commit.decisions);
      return commit.expectedRevision + 1;
    });
  }

  async isExecuted(id: string, actionId: string): Promise<boolean> {
    return (await this.engine.get('SELECT 1 AS done FROM rollout_actions WHERE rollout_id = ? AND action_id = ?', [id, actionId])) !== undefined;
  }

  /**
   * Deletes the executed-action records of rollouts that finished (and last changed) before
   * `cutoff`: they only guard pending actions against running twice, and a finished rollout has
   * none (a later rollback of it numbers its actions on). Resolves to the number deleted.
   */
  async deleteExecutedActionsBefore(cutoff: Date): Promise<number> {
    const { changes } = await this.engine.run('DELETE FROM rollout_actions WHERE rollout_id IN (SELECT id FROM rollouts WHERE unfinished = 0 AND updated_at < ?)', [cutoff.toISOString()]);
    return changes;
  }

  /** Every executed action id of a rollout, in execution order (for operators and tests). */
  async executedActions(id: string): Promise<readonly string[]> {
    const rows = await this.engine.all('SELECT action_id FROM rollout_actions WHERE rollout_id = ? ORDER BY executed_at, action_id', [id]);
    return rows.map((row) => String(row.action_id));
  }

  async decisions(id: string, options: { afterId?: string; limit?: number } = {}): Promise<readonly DecisionLogEntry[]> {
    const params: (string | number)[] = [id];
    let after = '';
    if (options.afterId !== undefined) {
      after = 'AND ord > COALESCE((SELECT ord FROM rollout_decisions WHERE rollout_id = ? AND decision_id = ?), -1)';
      params.push(id, options.afterId);
    }
    let limit = '';
    if (options.limit !== undefined) (limit = 'LIMIT ?'), params.push(options.limit);
    const rows = await this.engine.all(`SELECT entry FROM rollout_decisions WHERE rollout_id = ? ${after} ORDER BY ord ${limit}`, params);
    return rows.map((row) => fromJsonColumn<DecisionLogEntry>(row.entry));
  }

  /**
   * Trims the per-device evidence of measurements in the decision logs of rollouts that finished
   * (and last changed) before `cutoff`, and of the last analysis run kept in their state; every
   * entry is looked at once. Resolves to the number of measurements trimmed.
   */
  async trimEvidenceBefore(cutoff: Date, now = new Date()): Promise<number> {
    let trimmed = 0;
    for (;;) {
      const batch = await this.engine.transaction(async (tx) => {
        const rows = await tx.all(
          `SELECT d.ord, d.rollout_id, d.entry FROM rollout_decisions d JOIN rollouts r ON r.id = d.rollout_id
           WHERE d.evidence_trimmed = 0 AND r.unfinished = 0 AND r.updated_at < ? ORDER BY d.ord LIMIT ?`,
          [cutoff.toISOString(), TRIM_BATCH],
        );
        // A rollout with entries still to trim may also keep its last analysis run's measurements in its state.
        for (const rolloutId of new Set(rows.map((row) => String(row.rollout_id)))) trimmed += await trimStateEvidence(tx, rolloutId, now);
        for (const row of rows) {
          // An entry that does not parse is left as it is (and not looked at again): it must not stop the sweep.
          const entry = parsedOrUndefined(row.entry);
          if (entry?.measurement && !entry.measurement.trimmed) {
            const measurement = trimMeasurementEvidence(entry.measurement, now);
            await tx.run('UPDATE rollout_decisions SET entry = ?, evidence_trimmed = 1 WHERE ord = ?', [toJsonColumn({ ...entry, measurement }), Number(row.ord)]);
            trimmed++;
          } else {
            await tx.run('UPDATE rollout_decisions SET evidence_trimmed = 1 WHERE ord = ?', [Number(row.ord)]);
          }
        }
        return rows.length;
      });
      if (batch < TRIM_BATCH) return trimmed;
    }
  }
}

/**
 * Holds a rollout at `revision` for the rest of the transaction (RecordFence): null when it is
 * still there, its row then locked until the transaction ends, so no commit of the rollout (by any
 * server) lands in between; else what it is now. A no-op UPDATE takes the row lock on both
 * engines (SQLite serializes transactions anyway); on PostgreSQL (READ COMMITTED) one that waited
 * for a concurrent commit re-reads the row, and finds the revision that commit wrote.
 */
export async function holdRolloutRevision(db: SqlExecutor, id: string, revision: number): Promise<string | null> {
  const { changes } = await db.run('UPDATE rollouts SET revision = revision WHERE id = ? AND revision = ?', [id, revision]);
  if (changes === 1) return null;
  const current = await db.get('SELECT revision FROM rollouts WHERE id = ?', [id]);
  return current ? `now at revision ${Number(current.revision)}` : 'no such rollout';
}

/**
 * Serializes, until the transaction ends, what decides which rollout of `model` may go on: a start
 * (create) and a rollback of a finished rollout (refuseUndoingNewer). Not the model's row: a
 * version status change holds that row while it waits for a version's, and a rollback — the one
 * command that must always be answered — must not wait behind it (it did, on PostgreSQL, for as
 * long as an operator's transaction held the version). SQLite serializes transactions anyway; on
 * PostgreSQL a transaction-scoped advisory lock per schema and model.
 */
async function lockModelRollouts(tx: SqlExecutor, dialect: Dialect, model: string): Promise<void> {
  if (dialect !== 'postgres') return;
  await tx.get("SELECT pg_advisory_xact_lock(hashtextextended('fleetprune-rollouts:' || coalesce(current_schema(), '') || '/' || CAST(? AS text), 0)) AS locked", [model]);
}

/**
 * A commit recording a rollback (its decision) of a rollout that had finished (its stored phase
 * Completed, Failed, Aborted or RolledBack) would undo a newer rollout of the model that promoted
 * or is under way: refused under lockModelRollouts, as RolloutService checks it on the leader
 * (#refuseUndoingNewer), for a newer rollout stored by another server meanwhile. A start there
 * (create, which takes that lock too) either committed before (seen here) or waits and then finds
 * this rollback's reverts pending.
 */
async function refuseUndoingNewer(tx: SqlExecutor, dialect: Dialect, id: string, model: string): Promise<void> {
  await lockModelRollouts(tx, dialect, model);
  const row = await tx.get<{ phase: RolloutPhase; ord: number | string }>('SELECT phase, ord FROM rollouts WHERE id = ?', [id]);
  if (!row || !TERMINAL_PHASES.includes(row.phase)) return;
  const newer = await tx.get<{ id: string; phase: RolloutPhase; candidate_version: string }>(
    `SELECT id, phase, candidate_version FROM rollouts WHERE model = ? AND ord > ? AND (phase = ? OR phase NOT IN (${TERMINAL_PHASES.map(() => '?').join(', ')})) ORDER BY ord DESC LIMIT 1`,
    [model, Number(row.ord), 'Completed', ...TERMINAL_PHASES],
  );
  if (newer) {
    throw new RolloutCommandError(`rollout ${newer.id} of ${model} (${newer.phase}, ${newer.candidate_version}) came after this one; rolling this one back would undo it: roll back ${newer.id} instead`);
  }
}

/**
 * Trims the measurements of the last analysis run kept in a finished rollout's state. The
 * revision is left as it is (what changes is evidence only: `state.analysis`, which nothing cached
 * per revision reads — the rollout summaries and the awaited devices), but the write happens only if the
 * state is still the one read: a commit racing this one (a rollback of a completed rollout) keeps
 * its state, and its new decisions bring the rollout back to the next sweep.
 */
async function trimStateEvidence(tx: SqlExecutor, rolloutId: string, now: Date): Promise<number> {
  const row = await tx.get('SELECT state, revision FROM rollouts WHERE id = ?', [rolloutId]);
  let state: RolloutState;
  try {
    state = fromJsonColumn<RolloutState>(row?.state);
  } catch {
    return 0;
  }
  const untrimmed = state.analysis?.measurements.filter((measurement) => !measurement.trimmed).length ?? 0;
  if (!state.analysis || untrimmed === 0) return 0;
  const analysis = { ...state.analysis, measurements: state.analysis.measurements.map((measurement) => trimMeasurementEvidence(measurement, now)) };
  const { changes } = await tx.run('UPDATE rollouts SET state = ? WHERE id = ? AND revision = ?', [toJsonColumn({ ...state, analysis }), rolloutId, Number(row!.revision)]);
  return changes === 1 ? untrimmed : 0;
}

function parsedOrUndefined(text: unknown): DecisionLogEntry | undefined {
  try {
    return fromJsonColumn<DecisionLogEntry>(text);
  } catch {
    return undefined;
  }
}

async function appendDecisions(tx: SqlExecutor, rolloutId: string, decisions: readonly DecisionLogEntry[]): Promise<void> {
  for (const decision of decisions) {
    await tx.run('INSERT INTO rollout_decisions (rollout_id, decision_id, at, entry) VALUES (?, ?, ?, ?)', [rolloutId, decision.id, iso(decision.at), toJsonColumn(decision)]);
  }
}

/** The WHERE clause (empty without a filter) of list and count. */
function rolloutFilter(filter: RolloutCountFilter & { finished?: boolean }): { where: string; params: string[] } {
  const conditions: string[] = [];
  const params: string[] = [];
  if (filter.unfinished) conditions.push('unfinished = 1');
  if (filter.finished) conditions.push('unfinished = 0');
  if (filter.model !== undefined) (conditions.push('model = ?'), params.push(filter.model));
  // No such rollout: the subquery is NULL and the comparison never true.
  if (filter.newerThan !== undefined) (conditions.push('ord > (SELECT ord FROM rollouts WHERE id = ?)'), params.push(filter.newerThan));
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', params };
}

/** Matches InMemoryRolloutRepository: pending actions, a non-terminal phase, or deliveries still in flight. */
function unfinished(state: RolloutState, pendingActions: readonly RolloutAction[]): boolean {
  return (
    pendingActions.length > 0 ||
    !TERMINAL_PHASES.includes(state.phase) ||
    state.devices.some((device) => device.delivery === 'retrying' || device.delivery === 'pending')
  );
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
