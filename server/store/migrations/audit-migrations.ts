import type { Migration } from './migration.ts';

export const auditMigrations: Migration[] = [
  {
    domain: 'audit',
    version: 1,
    name: 'audit log',
    sql: (t) => `
      CREATE TABLE audit_log (
        id ${t.serialPrimaryKey},
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL
      );`,
  },
  {
    domain: 'audit',
    version: 2,
    name: 'audit entries by action and target',
    sql: () => `CREATE INDEX audit_log_action_target ON audit_log (action, target);`,
  },
];
