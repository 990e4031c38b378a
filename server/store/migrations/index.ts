import { auditMigrations } from './audit-migrations.ts';
import { authMigrations } from './auth-migrations.ts';
import { fleetMigrations } from './fleet-migrations.ts';
import { jobsMigrations } from './jobs-migrations.ts';
import type { Migration } from './migration.ts';
import { registryMigrations } from './registry-migrations.ts';
import { rolloutMigrations } from './rollout-migrations.ts';

/**
 * Every domain's migrations, domains in dependency order. A new domain adds its own file and
 * one entry here; a domain's new migration appends to its own list.
 */
export const ALL_MIGRATIONS: readonly Migration[] = [
  ...registryMigrations,
  ...authMigrations,
  ...auditMigrations,
  ...jobsMigrations,
  ...rolloutMigrations,
  ...fleetMigrations,
];
