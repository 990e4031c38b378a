import type { Store } from '../store/store.ts';
import type { AuditEntry } from '../store/repositories/audit-repository.ts';

/** Reads the audit log; writes happen inside each service's own transactions. */
export class AuditService {
  constructor(private readonly store: Store) {}

  list(options: { beforeId?: number; limit?: number }): Promise<AuditEntry[]> {
    return this.store.audit.list(options);
  }
}
