import { z } from 'zod';
import type { Store } from '../store/store.ts';
import type { AuditEntry, AuditFilter } from '../store/repositories/audit-repository.ts';

/** The filters of an audit listing, as REST's query and gRPC's request give them (the CLI's flags too). */
export const AuditFilterSchema = z.strictObject({
  action: z
    .string()
    .max(64, 'must be at most 64 characters')
    .regex(/^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*(\.?\*)?$/, 'must be an action such as rollout.assign, or the beginning of some ending in * (rollout.*)')
    .optional(),
  actor: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
  target: z.string().min(1, 'must not be empty').max(300, 'must be at most 300 characters').optional(),
});

/** Reads the audit log; writes happen inside each service's own transactions. */
export class AuditService {
  constructor(private readonly store: Store) {}

  list(options: AuditFilter & { beforeId?: number; limit?: number }): Promise<AuditEntry[]> {
    return this.store.audit.list(options);
  }
}
