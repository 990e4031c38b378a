import type { Manifest } from '../../../shared/artifact/manifest.ts';
import type { SqlExecutor } from '../sql-engine.ts';
import { fromJsonColumn, toJsonColumn } from './json-column.ts';

export interface ModelRecord {
  name: string;
  createdAt: string;
  createdBy: string;
  versionCount: number;
  latestVersion: string | null;
}

export interface VersionRecord {
  model: string;
  version: string;
  /** Registration order within the model, 1, 2, 3, ... */
  seq: number;
  artifactId: string;
  manifest: Manifest;
  parentArtifactId: string | null;
  /** The registered version holding the parent artifact, when there is one. */
  parent: { model: string; version: string } | null;
  epsilon: number | null;
  dataFingerprint: string;
  metrics: Manifest['metrics'];
  retired: boolean;
  aliases: string[];
  createdAt: string;
  createdBy: string;
}

export type NewVersion = Omit<VersionRecord, 'parent' | 'aliases' | 'retired'>;

export interface AliasRecord {
  model: string;
  alias: string;
  version: string;
  updatedAt: string;
  updatedBy: string;
}

const VERSION_COLUMNS = `v.model, v.version, v.seq, v.artifact_id, v.manifest, v.parent_artifact_id, v.epsilon,
  v.data_fingerprint, v.metrics, v.retired, v.created_at, v.created_by,
  (SELECT p.model FROM model_versions p WHERE p.artifact_id = v.parent_artifact_id ORDER BY CASE WHEN p.model = v.model THEN 0 ELSE 1 END, p.model LIMIT 1) AS parent_model,
  (SELECT p.version FROM model_versions p WHERE p.artifact_id = v.parent_artifact_id ORDER BY CASE WHEN p.model = v.model THEN 0 ELSE 1 END, p.model LIMIT 1) AS parent_version`;

/** The largest `seq` (INTEGER: 4 bytes on PostgreSQL). */
const MAX_SEQ = 2_147_483_647;

/** SQL for models, their versions and aliases. */
export class ModelsRepository {
  constructor(private readonly db: SqlExecutor) {}

  /**
   * Creates the model unless it exists. One statement, not SELECT then INSERT: on PostgreSQL two
   * first registrations under a new name both saw no row and the second INSERT failed (a 500).
   */
  async ensureModel(name: string, at: string, by: string): Promise<void> {
    await this.db.run('INSERT INTO models (name, created_at, created_by) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING', [name, at, by]);
  }

  /**
   * Locks the model's row until the transaction ends, so registrations under it take turns: on
   * PostgreSQL two of them otherwise read the same highest seq, and the loser was refused (409).
   * A no-op UPDATE, as in lockVersion.
   */
  async lockModel(name: string): Promise<void> {
    await this.db.run('UPDATE models SET created_at = created_at WHERE name = ?', [name]);
  }

  async listModels(): Promise<ModelRecord[]> {
    return this.selectModels('', []);
  }

  async getModel(name: string): Promise<ModelRecord | undefined> {
    return (await this.selectModels('WHERE m.name = ?', [name]))[0];
  }

  private async selectModels(where: string, params: string[]): Promise<ModelRecord[]> {
    const rows = await this.db.all(
      `SELECT m.name, m.created_at, m.created_by,
         (SELECT COUNT(*) FROM model_versions v WHERE v.model = m.name) AS version_count,
         (SELECT v.version FROM model_versions v WHERE v.model = m.name ORDER BY v.seq DESC LIMIT 1) AS latest_version
       FROM models m ${where} ORDER BY m.name`,
      params,
    );
    return rows.map((row) => ({
      name: String(row.name),
      createdAt: String(row.created_at),
      createdBy: String(row.created_by),
      versionCount: Number(row.version_count),
      latestVersion: row.latest_version === null ? null : String(row.latest_version),
    }));
  }

  async countModels(): Promise<number> {
    return Number((await this.db.get('SELECT COUNT(*) AS n FROM models'))?.n ?? 0);
  }

  async countVersions(): Promise<number> {
    return Number((await this.db.get('SELECT COUNT(*) AS n FROM model_versions'))?.n ?? 0);
  }

  /**
   * Versions of a model in registration order, `limit` of them after `afterSeq`. An `afterSeq`
   * past the largest seq the column holds is an empty page: PostgreSQL's INTEGER refuses a larger
   * parameter (a 500), where SQLite simply found nothing.
   */
  async listVersions(model: string, options: { afterSeq?: number; limit?: number } = {}): Promise<VersionRecord[]> {
    const rows = await this.db.all(
      `SELECT ${VERSION_COLUMNS} FROM model_versions v WHERE v.model = ? AND v.seq > ? ORDER BY v.seq LIMIT ?`,
      [model, Math.min(options.afterSeq ?? 0, MAX_SEQ), options.limit ?? 100],
    );
    return this.withAliases(rows.map(toVersion));
  }

  /**
   * Versions of every model, by model name then registration order: at most `limit` (default 100)
   * after version `after.seq` of model `after.model` (from the first model's first without it).
   */
  async listAllVersions(options: { after?: { model: string; seq: number }; limit?: number } = {}): Promise<VersionRecord[]> {
    const { after, limit = 100 } = options;
    const rows = await this.db.all(
      `SELECT ${VERSION_COLUMNS} FROM model_versions v ${after ? 'WHERE v.model > ? OR (v.model = ? AND v.seq > ?)' : ''} ORDER BY v.model, v.seq LIMIT ?`,
      after ? [after.model, after.model, Math.min(after.seq, MAX_SEQ), limit] : [limit],
    );
    return this.withAliases(rows.map(toVersion));
  }

  async getVersion(model: string, version: string): Promise<VersionRecord | undefined> {
    const row = await this.db.get(`SELECT ${VERSION_COLUMNS} FROM model_versions v WHERE v.model = ? AND v.version = ?`, [model, version]);
    return row ? (await this.withAliases([toVersion(row)]))[0] : undefined;
  }

  /** A version that registered `artifactId` (of `model` only, when given; else the first model's by name). */
  async findByArtifact(artifactId: string, model?: string): Promise<VersionRecord | undefined> {
    const row =
      model === undefined
        ? await this.db.get(`SELECT ${VERSION_COLUMNS} FROM model_versions v WHERE v.artifact_id = ? ORDER BY v.model LIMIT 1`, [artifactId])
        : await this.db.get(`SELECT ${VERSION_COLUMNS} FROM model_versions v WHERE v.artifact_id = ? AND v.model = ?`, [artifactId, model]);
    return row ? (await this.withAliases([toVersion(row)]))[0] : undefined;
  }

  /** The sha256 of every file any registered version's manifest lists (what blob GC must keep). */
  async referencedBlobs(): Promise<Set<string>> {
    const referenced = new Set<string>();
    for (const row of await this.db.all('SELECT manifest FROM model_versions')) {
      const manifest = fromJsonColumn<Pick<Manifest, 'files'>>(row.manifest);
      for (const file of Object.values(manifest.files ?? {})) referenced.add(file.sha256);
    }
    return referenced;
  }

  async maxSeq(model: string): Promise<number> {
    return Number((await this.db.get('SELECT MAX(seq) AS n FROM model_versions WHERE model = ?', [model]))?.n ?? 0);
  }

  async insertVersion(version: NewVersion): Promise<void> {
    await this.db.run(
      `INSERT INTO model_versions (model, version, seq, artifact_id, manifest, parent_artifact_id, epsilon, data_fingerprint,
         metrics, retired, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
      [
        version.model,
        version.version,
        version.seq,
        version.artifactId,
        toJsonColumn(version.manifest),
        version.parentArtifactId,
        version.epsilon,
        version.dataFingerprint,
        toJsonColumn(version.metrics),
        version.createdAt,
        version.createdBy,
      ],
    );
  }

  /**
   * Locks the version's row until the transaction ends; false when there is no such version.
   * Whoever checks a version's retired flag or aliases before changing the other takes it first:
   * PostgreSQL transactions (READ COMMITTED) otherwise each miss the other's uncommitted change,
   * and a retired version ended up holding an alias. SQLite serializes transactions anyway; a
   * no-op UPDATE takes the lock on both engines, where SELECT ... FOR UPDATE is PostgreSQL only.
   */
  async lockVersion(model: string, version: string): Promise<boolean> {
    return (await this.db.run('UPDATE model_versions SET retired = retired WHERE model = ? AND version = ?', [model, version])).changes > 0;
  }

  async setRetired(model: string, version: string, retired: boolean): Promise<boolean> {
    const { changes } = await this.db.run('UPDATE model_versions SET retired = ? WHERE model = ? AND version = ?', [
      retired ? 1 : 0,
      model,
      version,
    ]);
    return changes > 0;
  }

  async getAlias(model: string, alias: string): Promise<AliasRecord | undefined> {
    const row = await this.db.get('SELECT * FROM model_aliases WHERE model = ? AND alias = ?', [model, alias]);
    return row ? toAlias(row) : undefined;
  }

  /**
   * Points the alias at the version, creating it if needed. One upsert, not UPDATE then INSERT: on
   * PostgreSQL two first settings of an alias both updated nothing and the second INSERT failed.
   */
  async setAlias(record: AliasRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO model_aliases (model, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      [record.model, record.alias, record.version, record.updatedAt, record.updatedBy],
    );
  }

  /**
   * Removes the alias; false when there was none. With `version`, only while it still points at
   * that version: one conditional DELETE, so a move made meanwhile (by another transaction) stays.
   */
  async deleteAlias(model: string, alias: string, version?: string): Promise<boolean> {
    const onlyAt = version === undefined ? '' : ' AND version = ?';
    const params = version === undefined ? [model, alias] : [model, alias, version];
    return (await this.db.run(`DELETE FROM model_aliases WHERE model = ? AND alias = ?${onlyAt}`, params)).changes > 0;
  }

  /** Each version's aliases, read in one query for the models of `versions`. */
  private async withAliases(versions: VersionRecord[]): Promise<VersionRecord[]> {
    if (versions.length === 0) return versions;
    const models = [...new Set(versions.map((version) => version.model))];
    const rows = await this.db.all(`SELECT model, alias, version FROM model_aliases WHERE model IN (${models.map(() => '?').join(', ')}) ORDER BY alias`, models);
    for (const version of versions) {
      version.aliases = rows.filter((row) => row.model === version.model && row.version === version.version).map((row) => String(row.alias));
    }
    return versions;
  }

}

function toVersion(row: Record<string, unknown>): VersionRecord {
  return {
    model: String(row.model),
    version: String(row.version),
    seq: Number(row.seq),
    artifactId: String(row.artifact_id),
    manifest: fromJsonColumn<Manifest>(row.manifest),
    parentArtifactId: row.parent_artifact_id === null ? null : String(row.parent_artifact_id),
    parent: row.parent_model === null || row.parent_model === undefined ? null : { model: String(row.parent_model), version: String(row.parent_version) },
    epsilon: row.epsilon === null ? null : Number(row.epsilon),
    dataFingerprint: String(row.data_fingerprint),
    metrics: fromJsonColumn<Manifest['metrics']>(row.metrics),
    retired: Number(row.retired) === 1,
    aliases: [],
    createdAt: String(row.created_at),
    createdBy: String(row.created_by),
  };
}

function toAlias(row: Record<string, unknown>): AliasRecord {
  return {
    model: String(row.model),
    alias: String(row.alias),
    version: String(row.version),
    updatedAt: String(row.updated_at),
    updatedBy: String(row.updated_by),
  };
}
