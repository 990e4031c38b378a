import type { SqlEngine } from '../store/sql-engine.ts';
import { repositoriesOf, type Store } from '../store/store.ts';
import { VersionStatusRepository } from '../store/repositories/version-status-repository.ts';
import { supersedeOtherProduction } from '../registry/production-status.ts';
import type { ModelStatusPort, VersionStatus } from './fleet-port.ts';

/** Who the audit log names for changes the rollout controller makes. */
export const ROLLOUT_ACTOR = 'rollout-controller';

/**
 * ModelStatusPort over the registry. `production` moves the model's production alias, and
 * un-retires the version if it was retired (a rollback restoring a previous production retired
 * since), and the version that was production before it becomes `superseded`
 * (supersedeOtherProduction); failed and rolled-back take the alias away from the version if it
 * holds it. Every status (production, failed, rolled-back, superseded) is recorded with its
 * reason and audited, all in one transaction keyed by the command id, so a replayed action
 * changes nothing.
 */
export class RegistryModelStatus implements ModelStatusPort {
  readonly #engine: SqlEngine;

  constructor(private readonly store: Store) {
    this.#engine = store.engine;
  }

  async productionVersion(model: string): Promise<string | null> {
    return (await this.store.models.getAlias(model, 'production'))?.version ?? null;
  }

  async setVersionStatus(change: { commandId: string; model: string; version: string; status: VersionStatus; reason: string }): Promise<void> {
    await this.#engine.transaction(async (tx) => {
      const repos = repositoriesOf(tx, this.#engine.dialect);
      const statuses = new VersionStatusRepository(tx);
      // Status changes of one model take turns (and with operators' alias moves, which lock it
      // too), from before the version's newest status is read: each reads the production version
      // the one before it set, and supersedes it, and is dated after what the one before it
      // recorded. Locked only after recording, a promotion racing a move of the alias off its
      // version (PostgreSQL) was dated before the move's `superseded` of it: its version held the
      // alias as `superseded`. Unlocked, a failure racing an operator's move of the alias onto
      // the failing version took the alias the move had just set, while the move's `production`,
      // dated after the failure, stayed the version's status: production with no alias.
      await repos.models.lockModel(change.model);
      const at = await statuses.nextAt(change.model, change.version, new Date().toISOString());
      if (!(await statuses.record({ ...change, at }))) return;
      const target = `${change.model}@${change.version}`;
      if (change.status === 'production') {
        // Locked before its retired flag is read: a retirement at the same moment waits, or is seen and undone.
        const version = (await repos.models.lockVersion(change.model, change.version)) ? await repos.models.getVersion(change.model, change.version) : undefined;
        if (!version) throw new Error(`cannot make ${target} production: it is not in the registry`);
        if (version.retired) {
          // A rollback restores the previous production even if it was retired since: the fleet runs it again, so it is not retired.
          await repos.models.setRetired(change.model, change.version, false);
          await repos.audit.append({ at, actor: ROLLOUT_ACTOR, action: 'version.unretire', target, details: { reason: change.reason, commandId: change.commandId } });
        }
        const previous = await repos.models.getAlias(change.model, 'production');
        await repos.models.setAlias({ model: change.model, alias: 'production', version: change.version, updatedAt: at, updatedBy: ROLLOUT_ACTOR });
        await repos.audit.append({ at, actor: ROLLOUT_ACTOR, action: 'alias.set', target: `${change.model}:production`, details: { from: previous?.version ?? null, to: change.version, reason: change.reason, commandId: change.commandId } });
        await supersedeOtherProduction(tx, repos, { commandId: change.commandId, model: change.model, version: change.version, previousAlias: previous?.version ?? null, actor: ROLLOUT_ACTOR, at });
      } else if (await repos.models.deleteAlias(change.model, 'production', change.version)) {
        // A failed or rolled-back version does not stay production (a rollback restores the previous one next).
        // Deleted only while it points at this version, in one statement: read then delete took away
        // the alias an operator moved to another version in between (PostgreSQL).
        await repos.audit.append({ at, actor: ROLLOUT_ACTOR, action: 'alias.clear', target: `${change.model}:production`, details: { from: change.version, reason: change.reason, commandId: change.commandId } });
      }
      await repos.audit.append({ at, actor: ROLLOUT_ACTOR, action: 'version.status', target, details: { status: change.status, reason: change.reason, commandId: change.commandId } });
    });
  }

  /** The last status a rollout gave the version (null: none yet). */
  async versionStatus(model: string, version: string): Promise<{ status: VersionStatus; reason: string; at: string } | null> {
    const found = await new VersionStatusRepository(this.#engine).current(model, version);
    return found ? { status: found.status, reason: found.reason, at: found.at } : null;
  }
}
