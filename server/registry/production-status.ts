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
export async function supersedeOtherProduction(
  db: SqlExecutor,
  repos: Repositories,
  change: { commandId: string; model: string; version: string; previousAlias: string | null; actor: string; at: string },
): Promise<void> {
  const statuses = new VersionStatusRepository(db);
  const others = new Set(await statuses.productionVersions(change.model));
  if (change.previousAlias !== null) others.add(change.previousAlias);
  others.delete(change.version);
  const reason = `superseded by ${change.model}@${change.version}`;
  for (const version of [...others].sort()) {
    const commandId = `${change.commandId}:supersedes:${version}`;
    const at = await statuses.nextAt(change.model, version, change.at);
    if (!(await statuses.record({ commandId, model: change.model, version, status: 'superseded', reason, at }))) continue;
    await repos.audit.append({ at, actor: change.actor, action: 'version.status', target: `${change.model}@${version}`, details: { status: 'superseded', reason, commandId } });
  }
}
