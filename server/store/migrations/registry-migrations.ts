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
  {
    domain: 'registry',
    version: 2,
    name: 'model, version and alias names compare and sort by code point on every engine',
    // SQLite compares TEXT byte by byte (code point order); PostgreSQL by the database's collation,
    // which is often a language's (en_US.UTF-8, ICU): model lists came out in another order
    // ("apple" before "Banana" there, after it on SQLite). "C" is code point order on PostgreSQL;
    // the keys, their indexes and the foreign keys between them change together.
    sql: (t) =>
      t.dialect === 'sqlite'
        ? 'SELECT 1;'
        : `
      ALTER TABLE models ALTER COLUMN name TYPE TEXT COLLATE "C";
      ALTER TABLE model_versions ALTER COLUMN model TYPE TEXT COLLATE "C", ALTER COLUMN version TYPE TEXT COLLATE "C";
      ALTER TABLE model_aliases ALTER COLUMN model TYPE TEXT COLLATE "C", ALTER COLUMN alias TYPE TEXT COLLATE "C",
        ALTER COLUMN version TYPE TEXT COLLATE "C";`,
  },
];
