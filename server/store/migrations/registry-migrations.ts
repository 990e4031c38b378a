import type { Migration } from './migration.ts';

export const registryMigrations: Migration[] = [
  {
    domain: 'registry',
    version: 1,
    name: 'models, versions and aliases',
    sql: (t) => `
      CREATE TABLE models (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
      );
      CREATE TABLE model_versions (
        model TEXT NOT NULL REFERENCES models(name),
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        artifact_id TEXT NOT NULL,
        manifest TEXT NOT NULL,
        parent_artifact_id TEXT,
        epsilon ${t.real},
        data_fingerprint TEXT NOT NULL,
        metrics TEXT NOT NULL,
        retired INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (model, version),
        UNIQUE (model, seq),
        UNIQUE (model, artifact_id)
      );
      CREATE INDEX model_versions_artifact ON model_versions (artifact_id);
      CREATE TABLE model_aliases (
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        version TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        PRIMARY KEY (model, alias),
        FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
      );`,
  },
];
