import type { SqlExecutor } from '../store/sql-engine.ts';
import type { Repositories } from '../store/store.ts';
import { VersionStatusRepository } from '../store/repositories/version-status-repository.ts';

/**
 * Inside the transaction that makes `version` production (a rollout's promotion or restore, or
 * an operator moving the production alias), after the alias points at it: every other version of
 * the model that was production — it held the alias before this change, or its newest status is
 * still `production` — gets the status `superseded`, reason `superseded by MODEL@VERSION`, each
 * audited as `actor`. So a model never lists two production versions. Each change's command id
 * is derived from `commandId` (`COMMAND:supersedes:VERSION`): recorded once however often the
 * command is replayed. The model's row must be locked (lockModel) first: two versions made
 * production at once then take turns, and the second supersedes the first.
 */
export function supersedeOtherProduction(
  db: SqlExecutor,
  repos: Repositories,
  change: { commandId: string; model: string; version: string; previousAlias: string | null; actor: string; at: string },
): Promise<void> {
  return leaveProduction(db, repos, change, { keep: change.version, status: 'superseded', reason: `superseded by ${change.model}@${change.version}`, purpose: 'supersedes' });
}

/**
 * Inside the transaction in which an operator clears the production alias: the version(s) that
 * were production get the status `withdrawn`, reason `production alias cleared by ACTOR`, as
 * supersedeOtherProduction does for a move (command ids `COMMAND:withdraws:VERSION`): the
 * model has no production version then, and lists none.
 */
export function withdrawProduction(
  db: SqlExecutor,
  repos: Repositories,
  change: { commandId: string; model: string; previousAlias: string | null; actor: string; at: string },
): Promise<void> {
  return leaveProduction(db, repos, change, { keep: null, status: 'withdrawn', reason: `production alias cleared by ${change.actor}`, purpose: 'withdraws' });
}

async function leaveProduction(
  db: SqlExecutor,
  repos: Repositories,
  change: { commandId: string; model: string; previousAlias: string | null; actor: string; at: string },
  leaving: { keep: string | null; status: 'superseded' | 'withdrawn'; reason: string; purpose: string },
): Promise<void> {
  const statuses = new VersionStatusRepository(db);
  const others = new Set(await statuses.productionVersions(change.model));
  if (change.previousAlias !== null) others.add(change.previousAlias);
  if (leaving.keep !== null) others.delete(leaving.keep);
  const { status, reason } = leaving;
  for (const version of [...others].sort()) {
    const commandId = `${change.commandId}:${leaving.purpose}:${version}`;
    const at = await statuses.nextAt(change.model, version, change.at);
    if (!(await statuses.record({ commandId, model: change.model, version, status, reason, at }))) continue;
    await repos.audit.append({ at, actor: change.actor, action: 'version.status', target: `${change.model}@${version}`, details: { status, reason, commandId } });
  }
}
