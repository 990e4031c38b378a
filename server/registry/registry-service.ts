import { lineageProblems } from '../../shared/artifact/lineage-check.ts';
import { randomUUID } from 'node:crypto';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { canonicalText, columnKey } from '../../shared/util/canonical-text.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { ServiceError } from '../app/service-error.ts';
import { describeIssues } from '../app/describe-issues.ts';
import { repositoriesOf, type Repositories, type Store } from '../store/store.ts';
import { UniqueViolation, type SqlExecutor } from '../store/sql-engine.ts';
import type { ModelRecord, VersionRecord } from '../store/repositories/models-repository.ts';
import { VersionStatusRepository } from '../store/repositories/version-status-repository.ts';
import type { VersionStatus } from '../rollout/fleet-port.ts';
import { supersedeOtherProduction, withdrawProduction } from './production-status.ts';
import { ModelNameSchema, RESERVED_VERSION_NAMES, VersionNameSchema, type Alias } from './names.ts';
import { checkDevicesAccept } from './device-acceptance.ts';
import { RolloutHolds } from '../rollout/rollout-holds.ts';

/** The latest status a rollout or a move of the production alias gave a version (production, failed, rolled-back, superseded, withdrawn), with its reason. */
export interface VersionStatusView {
  status: VersionStatus;
  reason: string;
  at: string;
}

export interface RegisterInput {
  model: string;
  manifest: Manifest;
  /** Audit-log name of whoever registers it. */
  actor: string;
}

/**
 * Models, versions, aliases and the retired flag. Manifests reaching `register` have already
 * been verified (signature, blobs); every change and its audit entry commit together.
 */
export class RegistryService {
  constructor(
    private readonly store: Store,
    private readonly options: {
      /**
       * Why a version cannot be retired now (a rollout still rolling it out), else null. Read
       * through `db`, the retirement's transaction, once it holds the model's row locked.
       */
      retirementBlocker?: (model: string, version: string, db: SqlExecutor) => Promise<string | null>;
      /**
       * Why the model's production alias cannot be moved or cleared by hand now (a rollout of the
       * model under way, or still recording its statuses), else null. Read through `db`, the alias
       * move's transaction, once it holds the model's row locked. Default: RolloutHolds.ofProductionAlias.
       */
      productionAliasBlocker?: (model: string, db: SqlExecutor) => Promise<string | null>;
    } = {},
  ) {
    const holds = new RolloutHolds(store.engine);
    this.#productionAliasBlocker = options.productionAliasBlocker ?? ((model, db) => holds.ofProductionAlias(model, db));
  }

  readonly #productionAliasBlocker: (model: string, db: SqlExecutor) => Promise<string | null>;

  listModels(): Promise<ModelRecord[]> {
    return this.store.models.listModels();
  }

  async getModel(name: string): Promise<ModelRecord> {
    const model = await this.store.models.getModel(checkName(name));
    if (!model) throw new ServiceError('not_found', `no model ${name}`);
    return model;
  }

  async listVersions(name: string, options: { afterSeq?: number; limit?: number }): Promise<VersionRecord[]> {
    await this.getModel(name);
    return this.store.models.listVersions(name, options);
  }

  /** Versions of every model, by model name then registration order (see ModelsRepository.listAllVersions). */
  listAllVersions(options: { after?: { model: string; seq: number }; limit?: number }): Promise<VersionRecord[]> {
    return this.store.models.listAllVersions(options);
  }

  /** `ref` is a version, an alias (candidate, production) or `latest`. */
  async resolve(name: string, ref: string, repos: Repositories = this.store): Promise<VersionRecord> {
    checkName(name);
    let version = ref;
    if (ref === 'latest') {
      const latest = await latestVersion(name, repos);
      if (!latest) throw new ServiceError('not_found', (await repos.models.getModel(name)) ? `model ${name} has no versions` : `no model ${name}`);
      return latest;
    }
    if (RESERVED_VERSION_NAMES.has(ref)) {
      const alias = await repos.models.getAlias(name, ref);
      if (!alias) throw new ServiceError('not_found', `model ${name} has no ${ref} alias`);
      version = alias.version;
    }
    const found = await repos.models.getVersion(name, version);
    if (!found) throw new ServiceError('not_found', `no version ${name}@${version}`);
    return found;
  }

  /** The latest status change recorded for a version (null: none yet). */
  async versionStatus(model: string, version: string): Promise<VersionStatusView | null> {
    const found = await new VersionStatusRepository(this.store.engine).current(model, version);
    return found ? { status: found.status, reason: found.reason, at: found.at } : null;
  }

  /** versionStatus of each record, in order (one query for the lot). */
  async versionStatuses(records: readonly VersionRecord[]): Promise<(VersionStatusView | null)[]> {
    const found = await new VersionStatusRepository(this.store.engine).currentOf(records);
    return found.map((change) => (change ? { status: change.status, reason: change.reason, at: change.at } : null));
  }

  async getByArtifact(id: string): Promise<VersionRecord> {
    const found = await this.store.models.findByArtifact(id);
    if (!found) throw new ServiceError('not_found', `no registered artifact ${id}`);
    return found;
  }

  /** The version of `model` that `manifest`'s artifact is registered as; null when it is not. */
  async findRegistered(model: string, manifest: Manifest): Promise<VersionRecord | null> {
    checkName(model);
    return (await this.store.models.findByArtifact(artifactId(manifest), model)) ?? null;
  }

  /**
   * What registering `manifest` as a version of `model` would refuse, without changing anything:
   * a bad model or version name, a manifest every device would refuse (checkDevicesAccept: it
   * names another model, or is too large), the artifact already registered under this model, or
   * its explicit version taken. `models push` asks this before uploading any file.
   */
  async checkRegistrable(model: string, manifest: Manifest, repos: Repositories = this.store): Promise<void> {
    checkName(model);
    checkDevicesAccept(model, manifest);
    if (manifest.version !== undefined) {
      const parsed = VersionNameSchema.safeParse(manifest.version);
      if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, 'manifest.version'));
    }
    const lineage = lineageProblems(manifest.lineage);
    if (lineage.length > 0) throw new ServiceError('bad_request', lineage.map((problem) => `manifest.${problem}`).join('; '));
    await this.checkSameInterface(model, manifest, repos);
    const id = artifactId(manifest);
    // Of this model: servers before names had to match registered some artifacts under several.
    const same = await repos.models.findByArtifact(id, model);
    if (same) throw new ServiceError('already_exists', `artifact ${id} is already registered as ${model}@${same.version}`);
    // After that: a version registered before this check is what it is (a push restoring its files says so).
    await this.checkParent(manifest, repos);
    if (manifest.version !== undefined && (await repos.models.getVersion(model, manifest.version))) {
      throw new ServiceError('already_exists', `version ${model}@${manifest.version} already exists`);
    }
  }

  /**
   * Refuses a version that cannot stand in for the model's latest: of another task (a regression
   * model pushed or pruned under a classification model's name), or taking other features, or the
   * same ones in another order (another data set's model under this name). Devices compare a
   * candidate with the version they serve on their labelled data, whose columns its features name,
   * and clients of /v1/predict send rows in its feature order and read its answers, so it could
   * replace none of them. A model with no versions yet takes any.
   */
  async checkSameInterface(model: string, shape: { task: Manifest['task']; features: readonly string[]; labels: readonly string[] }, repos: Repositories = this.store): Promise<void> {
    const latest = await latestVersion(model, repos);
    if (!latest) return;
    const its = `(its latest version ${model}@${latest.version})`;
    if (latest.manifest.task !== shape.task) {
      throw new ServiceError('conflict', `model ${model} does ${latest.manifest.task} ${its}, and this is a ${shape.task} model: it can replace none of its versions on a device (give it another name)`);
    }
    const difference = nameDifference(latest.manifest.features, shape.features, 'feature');
    if (difference) {
      throw new ServiceError('conflict', `model ${model} takes other features ${its}: ${difference}; devices read a version's features by name and /v1/predict callers send them in its order, so this one can replace none of its versions (give it another name)`);
    }
    const classes = nameDifference(latest.manifest.labels, shape.labels, 'class');
    if (classes) {
      throw new ServiceError('conflict', `model ${model} predicts other classes ${its}: ${classes}; /v1/predict callers read a version's answers by class name, index and probability order, and devices score its benchmark against their holdout's labels, so this one can replace none of its versions (give it another name)`);
    }
  }

  /**
   * Refuses a lineage naming a registered parent that cannot be this artifact's: pruning keeps a
   * network's task, features and classes (and an odf2nna model's data), so a parent that differs in any is another model's (a
   * lineage signed wrongly), and the registry and dashboard would show it as this one's history.
   * A parent registered nowhere is taken (listed as not registered): it may be kept elsewhere.
   */
  async checkParent(manifest: Manifest, repos: Repositories = this.store): Promise<void> {
    const parentId = manifest.lineage.parentSha256;
    if (parentId === null) return;
    const parent = await repos.models.findByArtifact(parentId);
    if (!parent) return;
    const theirs = parent.manifest;
    const difference =
      theirs.task !== manifest.task
        ? `it does ${theirs.task}, this one ${manifest.task}`
        : (nameDifference(theirs.features, manifest.features, 'feature')?.replace(/^/, 'features: ') ??
          nameDifference(theirs.labels, manifest.labels, 'class')?.replace(/^/, 'classes: ') ??
          // ODF2NNA prunes and retrains on the data its parent was trained on.
          (manifest.lineage.method === 'odf2nna' && theirs.lineage.dataFingerprint !== manifest.lineage.dataFingerprint
            ? `it was trained on data ${theirs.lineage.dataFingerprint.slice(0, 12)}…, this one on ${manifest.lineage.dataFingerprint.slice(0, 12)}…`
            : undefined));
    if (difference) {
      throw new ServiceError('conflict', `manifest.lineage.parentSha256 names ${parent.model}@${parent.version} (artifact ${parentId.slice(0, 12)}…), which cannot be this model's parent: ${difference}; pruning keeps a network's task, features, classes and data, so this lineage is another model's`);
    }
  }

  /** Registers in its own transaction; an automatic version number lost to a concurrent registration is retried. */
  async register(input: RegisterInput): Promise<VersionRecord> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.store.transaction((tx) => this.registerIn(tx, input));
      } catch (error) {
        const retryable = error instanceof ServiceError && error.cause instanceof UniqueViolation && input.manifest.version === undefined;
        if (!retryable || attempt >= 3) throw error;
      }
    }
  }

  /** Registers inside a caller's transaction (pruning jobs register two versions at once). */
  async registerIn(tx: Repositories, input: RegisterInput): Promise<VersionRecord> {
    const { model, manifest, actor } = input;
    await this.checkRegistrable(model, manifest, tx);
    const id = artifactId(manifest);
    const at = new Date().toISOString();
    await tx.models.ensureModel(model, at, actor);
    // Other registrations under this model wait from here to our commit: the seq read next is ours alone.
    await tx.models.lockModel(model);
    // Again, locked: a version of another task or features registered since the check would now be the latest.
    await this.checkSameInterface(model, manifest, tx);
    const seq = (await tx.models.maxSeq(model)) + 1;
    let version = manifest.version ?? String(seq);
    if (manifest.version === undefined) {
      for (let n = seq; await tx.models.getVersion(model, version); n++) version = String(n + 1);
    }
    try {
      await tx.models.insertVersion({
        model,
        version,
        seq,
        artifactId: id,
        manifest,
        parentArtifactId: manifest.lineage.parentSha256,
        epsilon: manifest.lineage.epsilon,
        dataFingerprint: manifest.lineage.dataFingerprint,
        metrics: manifest.metrics,
        createdAt: at,
        createdBy: actor,
      });
    } catch (error) {
      if (error instanceof UniqueViolation) throw new ServiceError('already_exists', `version ${model}@${version} already exists`, { cause: error });
      throw error;
    }
    await tx.audit.append({ at, actor, action: 'version.register', target: `${model}@${version}`, details: { artifactId: id } });
    const registered = await tx.models.getVersion(model, version);
    if (!registered) throw new Error(`registered ${model}@${version} but cannot read it back`);
    return registered;
  }

  /**
   * Points `alias` at `version` (or clears it with null). Refused for missing or retired versions.
   * Pointing `production` at a version records, as a rollout's promotion does, its status
   * `production` (unless it is already) and `superseded` for the version(s) production before it;
   * clearing `production` records `withdrawn` for them. The production alias of a model with a
   * rollout under way is the rollout's: moving or clearing it is refused (409 naming the rollout).
   */
  async setAlias(name: string, alias: Alias, version: string | null, principal: Principal): Promise<VersionRecord | null> {
    checkName(name);
    const engine = this.store.engine;
    return engine.transaction(async (db) => {
      const tx = repositoriesOf(db, engine.dialect);
      if (!(await tx.models.getModel(name))) throw new ServiceError('not_found', `no model ${name}`);
      // Alias changes of one model take turns: the `from` each audits is the version it replaced.
      await tx.models.lockModel(name);
      const previous = await tx.models.getAlias(name, alias);
      // Checked with the model locked, as a rollout's creation checks the alias it read
      // (StoreRolloutRepository.create): a start at the same moment waits, or is seen.
      if (alias === 'production') {
        const blocker = await this.#productionAliasBlocker(name, db);
        if (blocker) throw new ServiceError('conflict', `the production alias of ${name} was not ${version === null ? 'cleared' : 'moved'}: ${blocker}`);
      }
      const at = new Date().toISOString();
      const audit = { at, actor: actorOf(principal), action: 'alias.set', target: `${name}:${alias}` };
      if (version === null) {
        if (!(await tx.models.deleteAlias(name, alias))) throw new ServiceError('not_found', `model ${name} has no ${alias} alias`);
        await tx.audit.append({ ...audit, action: 'alias.clear', details: { from: previous?.version ?? null } });
        if (alias === 'production') await withdrawProduction(db, tx, { commandId: `alias:${randomUUID()}`, model: name, previousAlias: previous?.version ?? null, actor: actorOf(principal), at });
        return null;
      }
      // Locked before reading its retired flag: a concurrent retirement waits, or is seen (lockVersion).
      const target = (await tx.models.lockVersion(name, version)) ? await tx.models.getVersion(name, version) : undefined;
      if (!target) throw new ServiceError('not_found', `no version ${name}@${version}; the ${alias} alias was not moved`);
      if (target.retired) throw new ServiceError('conflict', `${name}@${version} is retired; un-retire it before giving it the ${alias} alias`);
      // Already so: the alias is not written again nor audited (the log would say it was just moved,
      // as retiring a retired version); the production statuses below are still made right.
      if (previous?.version !== version) {
        await tx.models.setAlias({ model: name, alias, version, updatedAt: at, updatedBy: actorOf(principal) });
        await tx.audit.append({ ...audit, details: { from: previous?.version ?? null, to: version } });
      }
      if (alias === 'production') await this.recordProduction(db, tx, { model: name, version, previousAlias: previous?.version ?? null, actor: actorOf(principal), at });
      return (await tx.models.getVersion(name, version))!;
    });
  }

  /** The statuses an operator's move of the production alias onto `version` gives (see setAlias). */
  private async recordProduction(db: SqlExecutor, tx: Repositories, change: { model: string; version: string; previousAlias: string | null; actor: string; at: string }): Promise<void> {
    const statuses = new VersionStatusRepository(db);
    // Not a rollout's command: a fresh id, so each move records its own changes.
    const commandId = `alias:${randomUUID()}`;
    if ((await statuses.current(change.model, change.version))?.status !== 'production') {
      const reason = `production alias set by ${change.actor}`;
      const at = await statuses.nextAt(change.model, change.version, change.at);
      await statuses.record({ commandId, model: change.model, version: change.version, status: 'production', reason, at });
      await tx.audit.append({ at, actor: change.actor, action: 'version.status', target: `${change.model}@${change.version}`, details: { status: 'production', reason, commandId } });
    }
    await supersedeOtherProduction(db, tx, { commandId, ...change });
  }

  async setRetired(name: string, version: string, retired: boolean, principal: Principal): Promise<VersionRecord> {
    checkName(name);
    const engine = this.store.engine;
    return engine.transaction(async (db) => {
      const tx = repositoriesOf(db, engine.dialect);
      // The model locked before reading the version's rollouts, as a rollout's creation locks it
      // (StoreRolloutRepository.create): a start of a rollout of it waits, or is seen. The version
      // locked (after the model, as every transaction takes them) before reading its aliases: a
      // concurrent alias move onto it waits, or is seen (lockVersion).
      await tx.models.lockModel(name);
      const target = (await tx.models.lockVersion(name, version)) ? await tx.models.getVersion(name, version) : undefined;
      if (!target) throw new ServiceError('not_found', `no version ${name}@${version}`);
      // Already so: nothing changes, and nothing is audited (the log would say it was just done).
      if (target.retired === retired) return target;
      if (retired && target.aliases.length > 0) {
        throw new ServiceError('conflict', `${name}@${version} holds the ${target.aliases.join(' and ')} alias; move it first`);
      }
      const blocker = retired ? await this.options.retirementBlocker?.(name, version, db) : null;
      if (blocker) throw new ServiceError('conflict', `${name}@${version} is the candidate of ${blocker}; finish, abort or roll it back first`);
      await tx.models.setRetired(name, version, retired);
      await tx.audit.append({
        at: new Date().toISOString(),
        actor: actorOf(principal),
        action: retired ? 'version.retire' : 'version.unretire',
        target: `${name}@${version}`,
        details: {},
      });
      return (await tx.models.getVersion(name, version))!;
    });
  }
}

function checkName(name: string): string {
  const parsed = ModelNameSchema.safeParse(name);
  if (!parsed.success) throw new ServiceError('bad_request', describeIssues(parsed.error, 'model name'));
  return name;
}

/**
 * How `theirs` (the model's latest version's features, or classes) and `ours` differ, in one
 * phrase; undefined when they are the same, in the same order. Linear in the names (a wide model
 * lists tens of thousands of features, and this runs on the server's event loop).
 */
function nameDifference(theirNames: readonly string[], ourNames: readonly string[], noun: 'feature' | 'class'): string | undefined {
  // Compared as text: a version whose data spelled "é" decomposed takes the same feature as one that spelled it composed.
  // Features without spaces around them too: data read since those spaces were trimmed names " d " d.
  const key = noun === 'feature' ? columnKey : canonicalText;
  const theirs = theirNames.map(key);
  const ours = ourNames.map(key);
  const at = theirs.findIndex((name, i) => ours[i] !== name);
  if (at < 0 && theirs.length === ours.length) return undefined;
  const quote = (name: string) => JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
  const theirSet = new Set(theirs);
  const ourSet = new Set(ours);
  const missing = theirs.filter((name) => !ourSet.has(name));
  const extra = ours.filter((name) => !theirSet.has(name));
  const few = (names: string[]) => `${names.slice(0, 3).map(quote).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''}`;
  if (missing.length > 0 || extra.length > 0) {
    const parts = [missing.length > 0 ? `this one lacks ${few(missing)}` : '', extra.length > 0 ? `adds ${few(extra)}` : ''].filter(Boolean);
    return `${theirs.length} there, ${ours.length} here; ${missing.length > 0 ? parts.join(' and ') : `this one ${parts[0]}`}`;
  }
  // The same names: in another order (a manifest names no feature or class twice).
  return `the same ${theirs.length} in another order (${noun} ${at + 1} is ${quote(theirs[at]!)} there, ${quote(ours[at]!)} here)`;
}

/** The model's version registered last (highest seq), undefined when it has none. */
async function latestVersion(model: string, repos: Repositories): Promise<VersionRecord | undefined> {
  const seq = await repos.models.maxSeq(model);
  return seq > 0 ? (await repos.models.listVersions(model, { afterSeq: seq - 1, limit: 1 }))[0] : undefined;
}
