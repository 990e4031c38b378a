import { z } from 'zod';

/**
 * Roles, weakest first. `device` may only download artifacts (and later post reports);
 * viewer reads; operator also changes the registry and runs jobs; admin also manages tokens.
 */
export const ROLES = ['device', 'viewer', 'operator', 'admin'] as const;
export const RoleSchema = z.enum(ROLES);
export type Role = z.infer<typeof RoleSchema>;

/** What a call needs. */
export type Permission = 'download' | 'read' | 'write' | 'admin';

const MINIMUM_ROLE: Record<Permission, Role> = {
  download: 'device',
  read: 'viewer',
  write: 'operator',
  admin: 'admin',
};

export function roleAllows(role: Role, permission: Permission): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(MINIMUM_ROLE[permission]);
}

export function minimumRole(permission: Permission): Role {
  return MINIMUM_ROLE[permission];
}
